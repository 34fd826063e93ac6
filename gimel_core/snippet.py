"""The HTML a team pastes into its pages: Alephbet, an adapter pointed at Gimel, one experiment,
and on request a value goal and the plan's covariate."""

from __future__ import annotations

import json

from . import defaults
from .errors import InvalidInput
from .events import check_name

ALEPHBET_VERSION = "0.27.0"
"""The Alephbet release the snippet loads (pinned in package.json for the end-to-end tests)."""

ALEPHBET_SRC = f"https://cdn.jsdelivr.net/npm/alephbet@{ALEPHBET_VERSION}/dist/alephbet.min.js"
"""Where the snippet loads Alephbet from by default; serve your own copy with --alephbet-src."""

ADAPTERS = {"gimel": "GimelAdapter", "lamed": "LamedAdapter"}

BINARY_GOAL = "signup"
"""The example goal every snippet has, counted once per visitor."""


def snippet(
    track_url: str,
    namespace: str = "alephbet",
    adapter: str = "gimel",
    alephbet_src: str = ALEPHBET_SRC,
    experiment: str = "my first experiment",
    value_goal: str | None = None,
    covariate: str | None = None,
) -> str:
    """A ready-to-paste snippet; every value is JSON-encoded, so any name is safe in it."""
    cls = ADAPTERS[adapter]
    if value_goal is not None:
        value_goal = check_name("--value-goal", value_goal)
        if value_goal in (defaults.PARTICIPATE, BINARY_GOAL):
            raise InvalidInput(
                "--value-goal", f"{value_goal!r} is not a value goal: choose another name"
            )
    if covariate is not None:
        covariate = check_name("--covariate", covariate)
    return f"""<!-- A/B testing with Alephbet, counted by Gimel -->
<script src={_attr(alephbet_src)}></script>
<script>
  var gimel = new AlephBet.{cls}({_js(track_url)}, {_js(namespace)});
  // Alephbet 0.27.0 reads its queue of unsent events from the wrong place when the adapter
  // is created, so events that failed on an earlier page would be lost: read it, send it.
  gimel._queue = JSON.parse(gimel._storage.get(gimel.queue_name) || "[]");
  gimel._flush();
{_fields(experiment, value_goal, covariate)}  var experiment = new AlephBet.Experiment({{
    name: {_js(experiment)},
    tracking_adapter: gimel,
    variants: {{
      red: {{ activate: function () {{ /* show the red version */ }} }},
      blue: {{ activate: function () {{ /* show the blue version */ }} }}
    }}
  }});
  // A goal, counted once per visitor; call signup.complete() when it happens.
  var signup = new AlephBet.Goal({_js(BINARY_GOAL)}, {{ unique: true }});
  experiment.add_goal(signup);
  // document.querySelector("#signup").addEventListener("click", function () {{
  //   signup.complete();
  // }});
{_value_goal(value_goal)}</script>
"""


def _fields(experiment: str, value_goal: str | None, covariate: str | None) -> str:
    """Gimel's own fields, added to an event as Alephbet queues it: Alephbet sends the queued
    fields (all but _quuid) until it gets a 200, so a re-send carries the same value, total
    and uuid, and Gimel counts it once."""
    if value_goal is None and covariate is None:
        return ""
    text = f"""\
  // Gimel's fields join each event as Alephbet queues it, so that a re-send from the queue
  // (on the next page, until Gimel answers 200) carries the same ones.
  var MAX_VALUE = {defaults.MAX_VALUE:g};  // the largest number Gimel takes
"""
    hook = ""
    if covariate is not None:
        text += f"""\
  // {_js(covariate)}, the plan's covariate: a number about the visitor from before the
  // experiment (say, orders in the last 30 days), which your backend writes into the page as
  // <html data-gimel-covariate="3">. Read once, when the visitor joins, then sent with every
  // event of theirs; a visitor without it counts as 0.
  function covariate() {{
    var text = document.documentElement.getAttribute("data-gimel-covariate");
    var x = text ? Number(text) : NaN;
    return isFinite(x) && Math.abs(x) <= MAX_VALUE ? x : null;
  }}
"""
        hook += f"""    if (fields.experiment === {_js(experiment)}) {{
      var kept = JSON.stringify(["_gimel_covariate", fields.experiment]);
      if (fields.event === "participate") gimel._storage.set(kept, covariate());
      var x = gimel._storage.get(kept);
      if (typeof x === "number") fields.covariate = x;
    }}
"""
    if value_goal is not None:
        text += "  var amount = null;  // while valueGoal.complete(amount) runs\n"
        hook += """    if (amount !== null) {
      // The visitor's total on this goal before this event, kept in this browser.
      var key = JSON.stringify(["_gimel_total", fields.experiment, fields.event]);
      var total = gimel._storage.get(key) || 0;
      fields.value = amount;
      fields.total = total;
      gimel._storage.set(key, total + amount);
    }
"""
    return (
        text
        + """  gimel._queue.push = function (event) {
    var fields = event.properties;
"""
        + hook
        + """    return Array.prototype.push.call(this, event);
  };
"""
    )


def _value_goal(name: str | None) -> str:
    if name is None:
        return ""
    return f"""\
  // {_js(name)}, a value goal: call valueGoal.complete(49.90) each time it happens, with
  // its amount. Every call counts; this browser keeps the visitor's total and sends it along,
  // so Gimel sums each visitor's total per variant without keeping a row per visitor.
  var valueGoal = new AlephBet.Goal({_js(name)}, {{ unique: false }});
  experiment.add_goal(valueGoal);
  valueGoal.complete = function (value) {{
    if (typeof value !== "number" || !isFinite(value) || Math.abs(value) > MAX_VALUE) {{
      throw new Error("valueGoal.complete: the amount must be a number within ±" + MAX_VALUE);
    }}
    amount = value;
    try {{
      AlephBet.Goal.prototype.complete.call(this);
    }} finally {{
      amount = null;
    }}
  }};
"""


def _js(value: str) -> str:
    # JSON is valid JavaScript; escaping "<" keeps "</script>" in a name from closing the tag.
    return json.dumps(value).replace("<", "\\u003c")


def _attr(value: str) -> str:
    return '"' + value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;") + '"'
