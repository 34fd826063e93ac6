"""track.lua's steady state: one event of an experiment seen before is counted with only the
calls it needs, and leaves Redis exactly as the whole path does, in each counting mode.

The same events (open and declared experiments, new and repeated uuids, sources reaching
their budget, names a plan does not list, numbers, a batch, a new day) are counted three
times on an empty store: by track.lua as it is, by track.lua with its steady block turned
off (the whole path for every event), and by track.lua with a probe counting the events the
steady block answered. The answers and every key written (type, value, whether it expires)
must be the same with and without the block, and the block must have answered many of them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask

from gimel_core.events import Event
from gimel_core.storage import runner

pytestmark = pytest.mark.single_redis  # one script, whatever the topology

DAY = 86_400
HOUR = 3_600
BUDGET = 6
"""New events one source may add to an experiment in an hour: small, so sources reach it."""
PLAN = {"variants": ["a", "b"], "control": "a", "goals": ["signup"]}

STEADY = "if mode == keys_mode and (not exact or window + 0 == keys_window) and last_day"
"""The steady block's condition."""
ANSWERED = "  if new then\n    if new == 1 and source ~= '' then\n"
"""Where the steady block answers its event."""
PROBE = "gimel-test-steady-probe"


@contextmanager
def track_lua(edit: Callable[[str], str]) -> Iterator[None]:
    """track.lua as Redis runs it, edited, for the apps built inside."""
    original = runner.source

    def edited(name: str, settings: Any = None) -> tuple[str, str]:
        text, sha = original(name, settings)
        if name != "track":
            return text, sha
        changed = edit(text)
        return changed, hashlib.sha1(changed.encode()).hexdigest()

    runner._evalsha.cache_clear()
    runner.source = edited  # type: ignore[assignment]
    try:
        yield
    finally:
        runner.source = original  # type: ignore[assignment]
        runner._evalsha.cache_clear()


def once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"track.lua no longer holds {old!r}: update this test"
    return text.replace(old, new)


def without_steady(text: str) -> str:
    return once(text, STEADY, STEADY.replace("if ", "if false and ", 1))


def probed(text: str) -> str:
    return once(text, ANSWERED, ANSWERED.replace("\n", f"\n    redis.call('INCR', '{PROBE}')\n", 1))


def count_events(
    make_app: Callable[..., Flask], counting: str, window: int, records: int
) -> list[Any]:
    """Counts the events of the scenario; what each call answered."""
    # The next clock hour: a source's counts expire when their hour ends, by Redis's own
    # clock, which must not end one of them between two runs of the scenario.
    start = (time.time() // HOUR + 1) * HOUR + 60
    now = [start]
    app = make_app(
        clock=lambda: now[0],
        counting=counting,
        dedup_window=window,
        dedup_max_records=records,
        source_budget=BUDGET,
    )
    gimel = app.extensions["gimel"]
    gimel.experiments.declare("shop", "declared", PLAN)
    tracker = gimel.tracker
    answers: list[Any] = []

    def send(experiment: str, variant: str, goal: str, uuid: str, source: str | None, **extra: Any):
        try:
            tally = tracker.track(Event("shop", experiment, variant, goal, uuid, **extra), source)
            answers.append(
                (
                    "counted",
                    tally.counted,
                    tally.new,
                    tally.undeclared,
                    tally.over_budget,
                    len(tally.off_plan),
                )
            )
        except Exception as exc:  # a refusal: its kind and message
            answers.append((type(exc).__name__, str(exc)))

    for day in range(2):
        now[0] = start + day * DAY
        for i in range(60):
            source = None if i % 7 == 0 else f"{i % 5:016x}"  # five sources, some unbudgeted
            for experiment in ("open", "declared"):
                variant, goal = "ab"[i % 2], ("participate", "signup")[i // 2 % 2]
                send(experiment, variant, goal, f"u{day}-{i}", source)
                send(experiment, variant, goal, f"u{day}-{i}", source)  # the same again
                send(experiment, variant, goal, f"u0-{i}", source)  # yesterday's visitor
                if i % 11 == 0:  # a name the plan does not list, a new one in the open
                    send(experiment, "c", goal, f"u{day}-{i}", source)
                    send(experiment, variant, f"goal{i}", f"u{day}-{i}", source)
                if i % 13 == 0:  # numbers, which an hll experiment keeps none of
                    send(experiment, variant, "signup", f"u{day}-{i}", source, value=2.5)
        batch = [Event("shop", "open", "ab"[i % 2], "signup", f"b{day}-{i}") for i in range(5)]
        answers.append(("batch", tracker.track_many(batch, "f" * 16).counted))
    return answers


def stored(raw_redis: Any) -> dict[bytes, Any]:
    """Every key: its type, its value (a HyperLogLog's bytes), and whether it expires."""
    found: dict[bytes, Any] = {}
    for key in raw_redis.keys("*"):
        kind = raw_redis.type(key)
        if kind == b"hash":
            value: Any = raw_redis.hgetall(key)
        elif kind == b"set":
            value = raw_redis.smembers(key)
        else:
            value = raw_redis.get(key)
        found[key] = (kind, value, raw_redis.ttl(key) > 0)
    return found


# records: most uuid records of an exact experiment (with a window: a fifth per bucket), reached
@pytest.mark.parametrize(
    ("counting", "window", "records"), [("hll", 0, 50), ("exact", 0, 50), ("exact", 3 * DAY, 150)]
)
def test_the_steady_block_counts_as_the_whole_path_does(
    make_app, raw_redis: Any, counting: str, window: int, records: int
) -> None:
    answers = count_events(make_app, counting, window, records)
    written = stored(raw_redis)
    raw_redis.flushall()
    with track_lua(without_steady):
        assert count_events(make_app, counting, window, records) == answers
    assert stored(raw_redis) == written
    raw_redis.flushall()
    with track_lua(probed):
        assert count_events(make_app, counting, window, records) == answers
    steady = int(raw_redis.get(PROBE))
    assert steady >= 50, steady  # the scenario runs through the block
    # The events it counted: sent the first time, from a source within its budget, into a
    # counter that counted before. Their counts are what the whole path kept, compared above.
    assert any(answer[:3] == ("counted", 1, 1) for answer in answers)
    assert any(answer[0] == "counted" and answer[4] for answer in answers)  # over budget
    if counting == "exact":  # and past the records an experiment may hold
        assert any("GIMEL_DEDUP_MAX_RECORDS" in str(answer[-1]) for answer in answers)
