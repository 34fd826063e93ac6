"""Verdicts and decisions: what the statistics mean for the team.

Per result row, a verdict on the variant against the control, by the goal's role: primary
and secondary goals say which is better; a guardrail says whether the variant does harm
beyond the plan's margin. Per experiment, one decision line (:func:`decide`): ship, keep the
control, no difference, keep running, or check the split. Decided here once, server-side,
and shipped in the results, so the API, the CLI and the dashboard always say the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import defaults
from .looks import Schedule, Tested, date
from .results import Decision, GoalResult, Interval, Looks, Planning, Srm, VariantResult, Verdict
from .vocabulary import Analysis, DecisionKind, Direction, Role, VerdictKind

WIN_CHANCE = 0.95
"""A winner needs at least this chance to beat the other arm..."""
ALPHA = 0.05
"""...and a Holm-adjusted p-value below this."""
MIN_TRIALS = defaults.MIN_TRIALS


def verdict(
    row: VariantResult,
    control: VariantResult | None,
    goal: str,
    analysis: Analysis,
    direction: Direction,
) -> Verdict:
    """The verdict on ``row`` against the ``control`` row on ``goal`` (:func:`judge`)."""
    chance, p = deciding(row)
    return judge(row.label, row.trials, chance, p, control, goal, analysis, direction)


def deciding(row: VariantResult) -> tuple[float | None, float | None]:
    """The chance to beat and the adjusted p-value a verdict rests on: the CUPED-adjusted ones
    where the plan's covariate gave them (the same evidence with less noise), else the row's."""
    adjusted = row.adjusted
    if adjusted is not None and adjusted.p_value is not None:
        return adjusted.chance_to_beat_control, adjusted.p_value_adjusted
    return row.chance_to_beat_control, row.p_value_adjusted


def judge(
    label: str,
    trials: int,
    chance_to_beat: float | None,
    p_adjusted: float | None,
    control: VariantResult | None,
    goal: str,
    analysis: Analysis,
    direction: Direction,
) -> Verdict:
    """The verdict on variant ``label`` against the ``control`` row on ``goal``
    (``direction``: which way is better), from the values its row will hold: the analysis
    builds each row once, whole, with its verdict.

    ``p_adjusted`` (the row's ``p_value_adjusted``) decides, so the verdict follows the
    analysis method: in ``sequential`` analysis it is the always-valid running p-value, and a
    difference is only declared once the evidence would hold however often the dashboard was
    looked at; until then the verdict says the evidence is not enough yet. The chance to beat
    is Bayesian (Beta(1, 1) priors) and only confirms the direction.
    """
    name, goal = short(label), short(goal)
    base = short(control.label) if control else "the control"
    c, p = chance_to_beat, p_adjusted
    if c is not None and direction == Direction.DECREASE:
        c = 1.0 - c  # the chance to be better: lower
    if c is None or p is None or control is None:
        return Verdict(VerdictKind.WAIT, f"{name} vs {base} on {goal}: not enough data yet")
    sequential = analysis == Analysis.SEQUENTIAL
    p_shown = p_text(p) + (" (always valid)" if sequential else "")
    if c >= WIN_CHANCE and p < ALPHA:
        text = f"{name} beats {base} on {goal}, {chance(c)} Bayesian chance, {p_shown}"
        return Verdict(VerdictKind.WIN, text)
    if c <= 1 - WIN_CHANCE and p < ALPHA:
        text = f"{base} beats {name} on {goal}, {chance(1 - c)} Bayesian chance, {p_shown}"
        return Verdict(VerdictKind.LOSE, text)
    detail = f"{chance(c)} Bayesian chance {name} is better, {p_shown}"
    if min(trials, control.trials) < MIN_TRIALS:
        return Verdict(
            VerdictKind.WAIT, f"{name} vs {base} on {goal}: not enough data yet ({detail})"
        )
    if sequential:
        text = f"{name} vs {base} on {goal}: not enough evidence yet ({detail})"
        return Verdict(VerdictKind.WAIT, text)
    text = f"No clear difference between {name} and {base} on {goal} yet ({detail})"
    return Verdict(VerdictKind.EVEN, text)


def judge_guardrail(
    label: str,
    trials: int,
    uplift_ci: Interval | None,
    running_uplift_ci: Interval | None,
    control: VariantResult | None,
    goal: str,
    analysis: Analysis,
    direction: Direction,
    margin: float,
) -> Verdict:
    """Does variant ``label`` do harm on a guardrail ``goal`` beyond ``margin`` (relative)?
    From the values its row will hold, as :func:`judge`.

    A one-sided test at 2.5% on each side, read from the uplift's 95% interval (the running
    one in sequential and group-sequential analysis, so it holds however often the team
    looks): ``harm`` when
    even its most favourable end is worse than the margin allows, ``safe`` when even its
    least favourable end is within it, ``wait`` until one of the two is shown.
    """
    name, goal = short(label), short(goal)
    base = short(control.label) if control else "the control"
    ci = uplift_ci if analysis == Analysis.FIXED else running_uplift_ci
    if ci is None or control is None or min(trials, control.trials) < MIN_TRIALS:
        return Verdict(
            VerdictKind.WAIT, f"{name} vs {base} on guardrail {goal}: not enough data yet"
        )
    # Harm, as a positive relative change in the bad direction.
    low, high = (-ci[1], -ci[0]) if direction == Direction.INCREASE else (ci[0], ci[1])
    allowed = f"the {percent(margin)} margin" if margin else "no harm"
    if low > margin:
        text = f"{name} harms {goal}: {percent(low)} to {percent(high)} worse than {base}"
        return Verdict(VerdictKind.HARM, f"{text}, beyond {allowed}")
    if high < margin:
        worst = f"at worst {percent(high)} worse" if high > 0 else "no worse"
        return Verdict(
            VerdictKind.SAFE, f"{name} keeps {goal} within {allowed} ({worst} than {base})"
        )
    text = f"{name} vs {base} on guardrail {goal}: harm not ruled out yet"
    return Verdict(VerdictKind.WAIT, f"{text} (from {_change(low)} to {_change(high)})")


def judge_look(
    label: str,
    trials: int,
    control: VariantResult | None,
    goal: str,
    direction: Direction,
    tested: Tested | None,
    z: float | None,
    design: Schedule,
) -> Verdict:
    """The verdict of a group-sequential test (:func:`gimel_core.looks.holm`): a win or a
    loss once a look's ``|z|`` reached its bound, "no difference" once the final look did
    not, else wait for the next look (today's counts never decide)."""
    name, goal = short(label), short(goal)
    base = short(control.label) if control else "the control"
    if control is None or tested is None or z is None:
        upcoming = "today" if design.next_day is None else date(design.next_day)
        when = f" (first look at the end of {upcoming})"
        return Verdict(
            VerdictKind.WAIT,
            f"{name} vs {base} on {goal}: not enough data yet" + (when * (not design.days)),
        )
    if tested.crossed is not None:
        crossed = tested.z or 0.0
        edge = tested.bounds[tested.crossed]
        better = (crossed > 0) == (direction == Direction.INCREASE)
        winner, loser = (name, base) if better else (base, name)
        day = date(design.days[tested.crossed])
        text = (
            f"{winner} beats {loser} on {goal}: |z| = {abs(crossed):.2f} reached the "
            f"group-sequential bound {edge:.2f} at the look of {day}"
        )
        return Verdict(VerdictKind.WIN if better else VerdictKind.LOSE, text)
    edge = tested.bounds[len(design.fractions) - 1]
    detail = f"|z| = {abs(z):.2f}, bound {edge:.2f} at {percent(design.fractions[-1])} of the plan"
    if min(trials, control.trials) < MIN_TRIALS:
        return Verdict(
            VerdictKind.WAIT, f"{name} vs {base} on {goal}: not enough data yet ({detail})"
        )
    if design.final:
        text = f"No clear difference between {name} and {base} on {goal} at the final look"
        return Verdict(VerdictKind.EVEN, f"{text} ({detail})")
    text = f"{name} vs {base} on {goal}: not enough evidence yet ({detail})"
    return Verdict(VerdictKind.WAIT, text)


def _change(harm: float) -> str:
    return f"{percent(harm)} worse" if harm > 0 else f"{percent(-harm)} better"


def _risky(goal: GoalResult, row: VariantResult) -> bool:
    """A guardrail not decided yet whose estimate is already worse than its margin allows."""
    uplift = _uplift(row)
    if goal.role != Role.GUARDRAIL or _kind(row) != VerdictKind.WAIT or uplift is None:
        return False
    harm = -uplift if goal.direction == Direction.INCREASE else uplift
    return harm > goal.margin


def _uplift(row: VariantResult) -> float | None:
    """The row's estimate of the uplift: the CUPED-adjusted one where it exists."""
    adjusted = row.adjusted
    return adjusted.uplift if adjusted is not None and adjusted.uplift is not None else row.uplift


def decide(
    goals: Sequence[GoalResult],
    control: str | None,
    srm: Srm | None,
    participants: int,
    planned: int | None,
    planning: Planning | None,
    looks: Looks | None = None,
    correction: str | None = None,
) -> Decision:
    """The experiment's one decision line, from the verdicts of its goals by role.

    A sample-ratio mismatch comes first (no result can be trusted); then a variant that wins
    on a primary goal, loses on none and breaches no guardrail is shipped; a breached
    guardrail overrides a primary win, and one not settled yet whose estimate is already past
    its margin holds the win until it is. "No difference" needs the planned size reached (in
    group-sequential analysis, its final ``looks``): until then, and without a planned size,
    an undecided experiment keeps running. ``correction``: the family-wise correction the
    primary goals' verdicts were taken with, named in the line.
    """
    if srm is not None and srm.mismatch and srm.p_value is not None:
        return Decision(
            DecisionKind.CHECK_SPLIT,
            f"Check the split first: the participants do not match the planned weights "
            f"({p_text(srm.p_value)}), so no result can be trusted until the assignment is fixed",
        )
    primary = [g for g in goals if g.role == Role.PRIMARY]
    if control is None or not primary:
        what = "no primary goal yet" if control else "no data yet"
        return Decision(DecisionKind.KEEP_RUNNING, f"Keep running: {what}")
    guardrails = [g for g in goals if g.role == Role.GUARDRAIL]
    harms = {
        row.label: row.verdict.text
        for g in guardrails
        for row in g.results
        if row.verdict and row.verdict.kind == VerdictKind.HARM
    }
    risks = {row.label: (g, row) for g in guardrails for row in g.results if _risky(g, row)}
    rows: dict[str, list[VariantResult]] = {}  # variant -> its rows on the primary goals
    for g in primary:
        for row in g.results:
            if row.label != control and row.verdict is not None:
                rows.setdefault(row.label, []).append(row)
    beaten: dict[str, VariantResult] = {}  # variant -> its first loss on a primary goal
    for v, rs in rows.items():
        lost = next((r for r in rs if _kind(r) == VerdictKind.LOSE), None)
        if lost is not None:
            beaten[v] = lost
    winners = [
        (v, r)
        for v, rs in rows.items()
        if v not in beaten
        for r in rs
        if _kind(r) == VerdictKind.WIN
    ]
    for variant, row in sorted(winners, key=lambda w: -(_uplift(w[1]) or 0.0)):
        if variant in harms:
            continue
        if variant in risks:  # a win, but a guardrail looks harmed: not before it is settled
            guard, worse = risks[variant]
            return Decision(
                DecisionKind.KEEP_RUNNING,
                f"Keep running: {short(variant)} wins on a primary goal, but its harm to "
                f"{short(guard.goal)} is not ruled out yet ({_change(-_signed(guard, worse))} "
                "so far)",
                variant,
            )
        text = f"Ship {short(variant)}: {_text(row)}{_by(correction)}"
        return Decision(DecisionKind.SHIP, text, variant)
    if winners:
        variant = winners[0][0]
        return Decision(
            DecisionKind.KEEP_CONTROL,
            f"Do not ship {short(variant)}: it wins on a primary goal but {harms[variant]}",
            variant,
        )
    if rows and all(v in beaten or v in harms for v in rows):
        variant = next(iter(rows))
        reason = _text(beaten[variant]) + _by(correction) if variant in beaten else harms[variant]
        return Decision(DecisionKind.KEEP_CONTROL, f"Keep {short(control)}: {reason}", variant)
    if looks is not None:
        planned = looks.planned
    done = looks.final if looks is not None else planned is not None and participants >= planned
    if done and planned is not None:
        names = _goals(primary)
        at = f"at the planned {planned:,} participants"
        if looks is not None:
            at = f"at the final look ({looks.dates[-1]}, {planned:,} participants planned)"
        text = f"No difference on {names} {at}: keep {short(control)}{_by(correction)}"
        return Decision(DecisionKind.NO_DIFFERENCE, text)
    if looks is not None and not looks.dates:
        when = f"first look at the end of {looks.next_look} (UTC)"
        if looks.planned is None:  # an MDE-only plan: its size needs the control's rate
            when = f"the first look is the first closed day where {short(control)} converts"
        return Decision(
            DecisionKind.KEEP_RUNNING,
            f"Keep running: {when}; group-sequential analysis decides on closed days only",
        )
    return Decision(DecisionKind.KEEP_RUNNING, "Keep running: " + _remaining(primary, planning))


def _by(correction: str | None) -> str:
    return f"; {correction}" if correction else ""


def _signed(goal: GoalResult, row: VariantResult) -> float:
    """The row's uplift, positive when better in the goal's direction."""
    uplift = _uplift(row) or 0.0
    return uplift if goal.direction == Direction.INCREASE else -uplift


def _kind(row: VariantResult) -> VerdictKind | None:
    return row.verdict.kind if row.verdict else None


def _text(row: VariantResult) -> str:
    """A win's or a loss's verdict, which starts with a name: quoted as it is."""
    return row.verdict.text if row.verdict else ""


def _remaining(primary: Sequence[GoalResult], planning: Planning | None) -> str:
    names = _goals(primary)
    text = f"not enough evidence on {names} yet"
    if planning is None:
        return text
    if planning.needed is None:  # a declared MDE that no size reaches
        return text + "; the declared MDE is out of reach at any size with this counting"
    if planning.days_remaining is not None and planning.needed is not None:
        days = planning.days_remaining
        when = "less than a day" if days < 1 else f"about {days:,.0f} day{'s' * (days >= 1.5)}"
        return text + f"; {when} to the {planning.needed:,} participants the plan needs"
    return text


SHORT = 32
"""Characters of a name a sentence quotes: the row, the goal and the answer hold it whole. A
sentence per row quoting three 128-character names made one experiment's answer pass 6 MB."""


def short(name: str) -> str:
    return name if len(name) <= SHORT else name[: SHORT - 1] + "\u2026"


def _goals(goals: Sequence[GoalResult]) -> str:
    names = [short(g.goal) for g in goals[:3]]
    return ", ".join(names) + (f" and {len(goals) - 3} more" if len(goals) > 3 else "")


def percent(x: float) -> str:
    return f"{x * 100:.1f}%"


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
