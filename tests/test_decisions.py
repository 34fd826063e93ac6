"""Verdicts are decided once, in Python, and travel with the results (API, CLI, dashboard)."""

from __future__ import annotations

import json

import pytest
from statsmodels.stats.proportion import proportions_ztest

from gimel_core import decisions
from gimel_core.analysis import analyse
from gimel_core.results import (
    ExperimentCounts,
    ExperimentResult,
    Listing,
    Settings,
    VariantResult,
    Verdict,
)
from gimel_core.vocabulary import Analysis, Direction, Mode

FIXED, UP = Analysis.FIXED, Direction.INCREASE
"""Fixed-horizon analysis of a goal where higher is better, unless a test says otherwise."""

CONTROL = VariantResult("control", 100, 1000)


def row(chance: float | None, p: float | None, trials: int = 1000) -> VariantResult:
    return VariantResult(
        "red", 120, trials, chance_to_beat_control=chance, p_value=p, p_value_adjusted=p
    )


@pytest.mark.parametrize(
    ("chance", "p", "trials", "kind", "start"),
    [
        (0.96, 0.01, 1000, "win", "red beats control on signup, 96.0% Bayesian chance, p=0.010"),
        (
            0.9995,
            0.0001,
            1000,
            "win",
            "red beats control on signup, >99.9% Bayesian chance, p<0.001",
        ),
        (0.03, 0.02, 1000, "lose", "control beats red on signup, 97.0% Bayesian chance, p=0.020"),
        (0.96, 0.06, 1000, "even", "No clear difference between red and control on signup yet"),
        (0.94, 0.01, 1000, "even", "No clear difference"),  # p small but chance not enough
        (
            0.96,
            0.2,
            50,
            "wait",
            "red vs control on signup: not enough data yet (96.0% Bayesian chance",
        ),
        (None, None, 1000, "wait", "red vs control on signup: not enough data yet"),
    ],
)
def test_verdict_rules(
    chance: float | None, p: float | None, trials: int, kind: str, start: str
) -> None:
    verdict = decisions.verdict(row(chance, p, trials), CONTROL, "signup", FIXED, UP)
    assert verdict.kind == kind
    assert verdict.text.startswith(start)


def test_sequential_verdicts_say_when_the_evidence_is_not_enough() -> None:
    undecided = decisions.verdict(row(0.9, 0.2), CONTROL, "signup", Analysis.SEQUENTIAL, UP)
    assert undecided.kind == "wait"
    assert undecided.text.startswith("red vs control on signup: not enough evidence yet")
    assert "p=0.20 (always valid)" in undecided.text
    won = decisions.verdict(row(0.99, 0.01), CONTROL, "signup", Analysis.SEQUENTIAL, UP)
    assert won.kind == "win" and won.text.endswith("p=0.010 (always valid)")


def test_a_winner_needs_both_the_chance_and_the_adjusted_p_value() -> None:
    assert decisions.verdict(row(0.95, 0.049), CONTROL, "g", FIXED, UP).kind == "win"
    assert decisions.verdict(row(0.95, 0.05), CONTROL, "g", FIXED, UP).kind == "even"
    assert decisions.verdict(row(0.9499, 0.049), CONTROL, "g", FIXED, UP).kind == "even"


def counts(table: dict[str, tuple[int, int]]) -> ExperimentCounts:
    """A fixed-horizon experiment (exact counts) with one goal."""
    cells = {("participate", v): n for v, (_, n) in table.items()}
    cells |= {("signup", v): s for v, (s, _) in table.items()}
    names = tuple(sorted(table))
    return ExperimentCounts("exp", Mode.EXACT, names, ("signup",), cells, Settings(analysis=FIXED))


def test_analysis_ships_a_verdict_per_compared_variant() -> None:
    result = analyse(counts({"control": (100, 1000), "red": (140, 1000), "blue": (99, 1000)}))
    rows = {r.label: r for r in result.goals[0].results}
    assert rows["control"].verdict is None
    assert rows["red"].verdict is not None and rows["red"].verdict.kind == "win"
    # The p-value in the sentence is the Holm-adjusted one (two comparisons), from statsmodels.
    raw = proportions_ztest([140, 100], [1000, 1000])[1]
    assert rows["red"].p_value == pytest.approx(raw)
    assert f"p={min(1.0, 2 * raw):.3f}" in rows["red"].verdict.text
    assert rows["blue"].verdict is not None and rows["blue"].verdict.kind == "even"


def test_results_survive_json_both_ways() -> None:
    result = analyse(counts({"control": (100, 1000), "red": (140, 1000)}))
    listing = Listing([result])
    data = json.loads(json.dumps(listing.to_json()))
    assert Listing.from_json(data).to_json() == data  # the CLI reads back what the API wrote
    assert ExperimentResult.from_json(data[1]).goals[0].results[1].verdict == Verdict(
        "win",
        result.goals[0].results[1].verdict.text,  # type: ignore[union-attr]
    )


def test_sentences_quote_long_names_shortened_rows_keep_them_whole() -> None:
    long = "v" * 40
    control = VariantResult("c" * 128, 100, 1000)
    winner = VariantResult(
        long, 150, 1000, chance_to_beat_control=0.999, p_value=0.001, p_value_adjusted=0.001
    )
    text = decisions.verdict(winner, control, "g" * 100, FIXED, UP).text
    assert text.startswith(
        "v" * 31 + "\u2026 beats " + "c" * 31 + "\u2026 on " + "g" * 31 + "\u2026,"
    )
    assert winner.label == long  # the row itself names it in full
    assert decisions.short("x" * decisions.SHORT) == "x" * decisions.SHORT
