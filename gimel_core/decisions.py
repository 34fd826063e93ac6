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


def verdict(
    row: VariantResult, control: VariantResult | None, goal: str, analysis: str = "fixed"
) -> Verdict:
    """The verdict on ``row`` against the ``control`` row on ``goal``.

    ``p_value_adjusted`` decides, so the verdict follows the analysis method: in
    ``sequential`` analysis it is the always-valid running p-value, and a difference is only
    declared once the evidence would hold however often the dashboard was looked at; until
    then the verdict says the evidence is not enough yet. The chance to beat is Bayesian
    (Beta(1, 1) priors) and only confirms the direction.
    """
    name = row.label
    base = control.label if control else "the control"
    c, p = row.chance_to_beat_control, row.p_value_adjusted
    if c is None or p is None or control is None:
        return Verdict("wait", f"{name} vs {base} on {goal}: not enough data yet")
    p_shown = p_text(p) + (" (always valid)" if analysis == "sequential" else "")
    if c >= WIN_CHANCE and p < ALPHA:
        text = f"{name} beats {base} on {goal}, {chance(c)} Bayesian chance, {p_shown}"
        return Verdict("win", text)
    if c <= 1 - WIN_CHANCE and p < ALPHA:
        text = f"{base} beats {name} on {goal}, {chance(1 - c)} Bayesian chance, {p_shown}"
        return Verdict("lose", text)
    detail = f"{chance(c)} Bayesian chance {name} is better, {p_shown}"
    if min(row.trials, control.trials) < MIN_TRIALS:
        return Verdict("wait", f"{name} vs {base} on {goal}: not enough data yet ({detail})")
    if analysis == "sequential":
        text = f"{name} vs {base} on {goal}: not enough evidence yet ({detail})"
        return Verdict("wait", text)
    text = f"No clear difference between {name} and {base} on {goal} yet ({detail})"
    return Verdict("even", text)


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
