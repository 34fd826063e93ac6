"""Verdicts: what the statistics of one variant against the control mean for the team.

Decided here once, server-side, and shipped in the results (``verdict`` on every result
row), so the API, the CLI and the dashboard always say the same thing.
"""

from __future__ import annotations

from .results import VariantResult, Verdict

WIN_CHANCE = 0.95
"""A winner needs at least this chance to beat the other arm..."""
ALPHA = 0.05
"""...and a Holm-adjusted p-value below this."""
MIN_TRIALS = 100
"""Below this many participants in either arm, an undecided comparison is "not enough data"."""


def verdict(row: VariantResult, control: VariantResult | None, goal: str) -> Verdict:
    """The verdict on ``row`` against the ``control`` row on ``goal``."""
    name = row.label
    base = control.label if control else "the control"
    c, p = row.chance_to_beat_control, row.p_value_adjusted
    if c is None or p is None or control is None:
        return Verdict("wait", f"{name} vs {base} on {goal}: not enough data yet")
    if c >= WIN_CHANCE and p < ALPHA:
        return Verdict("win", f"{name} beats {base} on {goal}, {chance(c)} chance, {p_text(p)}")
    if c <= 1 - WIN_CHANCE and p < ALPHA:
        return Verdict(
            "lose", f"{base} beats {name} on {goal}, {chance(1 - c)} chance, {p_text(p)}"
        )
    detail = f"{chance(c)} chance {name} is better, {p_text(p)}"
    if min(row.trials, control.trials) < MIN_TRIALS:
        return Verdict("wait", f"{name} vs {base} on {goal}: not enough data yet ({detail})")
    return Verdict(
        "even", f"No clear difference between {name} and {base} on {goal} yet ({detail})"
    )


def chance(c: float) -> str:
    if c >= 0.999:
        return ">99.9%"
    if c <= 0.001:
        return "<0.1%"
    return f"{c * 100:.1f}%"


def p_text(p: float) -> str:
    if p < 0.001:
        return "p<0.001"
    return f"p={p:.3f}" if p < 0.1 else f"p={p:.2f}"
