"""The HTML a team pastes into its pages: Alephbet, an adapter pointed at Gimel, one experiment."""

from __future__ import annotations

import json

ALEPHBET_VERSION = "0.27.0"
"""The Alephbet release the snippet loads (pinned in package.json for the end-to-end tests)."""

ALEPHBET_SRC = f"https://cdn.jsdelivr.net/npm/alephbet@{ALEPHBET_VERSION}/dist/alephbet.min.js"
"""Where the snippet loads Alephbet from by default; serve your own copy with --alephbet-src."""

ADAPTERS = {"gimel": "GimelAdapter", "lamed": "LamedAdapter"}


def snippet(
    track_url: str,
    namespace: str = "alephbet",
    adapter: str = "gimel",
    alephbet_src: str = ALEPHBET_SRC,
    experiment: str = "my first experiment",
) -> str:
    """A ready-to-paste snippet; every value is JSON-encoded, so any name is safe in it."""
    cls = ADAPTERS[adapter]
    return f"""<!-- A/B testing with Alephbet, counted by Gimel -->
<script src={_attr(alephbet_src)}></script>
<script>
  var gimel = new AlephBet.{cls}({_js(track_url)}, {_js(namespace)});
  // Alephbet 0.27.0 reads its queue of unsent events from the wrong place when the adapter
  // is created, so events that failed on an earlier page would be lost: read it, send it.
  gimel._queue = JSON.parse(gimel._storage.get(gimel.queue_name) || "[]");
  gimel._flush();
  var experiment = new AlephBet.Experiment({{
    name: {_js(experiment)},
    tracking_adapter: gimel,
    variants: {{
      red: {{ activate: function () {{ /* show the red version */ }} }},
      blue: {{ activate: function () {{ /* show the blue version */ }} }}
    }}
  }});
  // A goal, counted once per visitor; call signup.complete() when it happens.
  var signup = new AlephBet.Goal("signup", {{ unique: true }});
  experiment.add_goal(signup);
  // document.querySelector("#signup").addEventListener("click", function () {{
  //   signup.complete();
  // }});
</script>
"""


def _js(value: str) -> str:
    # JSON is valid JavaScript; escaping "<" keeps "</script>" in a name from closing the tag.
    return json.dumps(value).replace("<", "\\u003c")


def _attr(value: str) -> str:
    return '"' + value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;") + '"'
