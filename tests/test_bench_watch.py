"""What bench/watch.py reads from the watcher: the hour of its SRM alert on a broken split (none
on a correct one), and a pass's round trips, which grow with the chunks, not the experiments."""

from __future__ import annotations

import pytest

from bench import watch
from bench.srm import Study


def test_the_watchers_srm_alert_is_found_at_its_hour_and_only_on_a_broken_split() -> None:
    # 30/70 on a declared 50/50 at 2,000 a day: a few hundred participants make it plain.
    broken = Study("broken", (1, 1), (0.3, 0.7), 2_000, 48, rate=0.1)
    outcomes = watch.simulate(broken, 2, seed=5, tag="broken")
    assert len(outcomes) == 2
    for outcome in outcomes:
        assert outcome.srm is not None and 1 <= outcome.srm <= 12, outcome
        assert outcome.fixed == 24, outcome  # the daily test's first look, at the day's end
    fine = Study("fine", (1, 1), (0.5, 0.5), 2_000, 48, rate=0.1)
    assert watch.simulate(fine, 2, seed=5, tag="fine") == [watch.Outcome(None, None, None)] * 2


def test_a_pass_makes_as_many_round_trips_for_any_experiments_in_a_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("gimel_core.watch.CHUNK", 20)
    few = watch.pass_figures(5, days=1, per_day=48)
    chunk = watch.pass_figures(20, days=1, per_day=48)
    three = watch.pass_figures(60, days=1, per_day=48)
    assert (few.chunks, chunk.chunks, three.chunks) == (1, 1, 3)
    assert few.round_trips == chunk.round_trips
    per_chunk = (three.round_trips - chunk.round_trips) / 2
    assert per_chunk == int(per_chunk) and 1 <= per_chunk <= 4, (chunk, three)
    assert three.seconds > 0 and three.cpu > 0
