"""Stored experiments: reading their counts, listing them, settings, reset and delete.

Reading is one script call per experiment (``read.lua``: settings, names, history and every
count), all in one round trip; the results are analysed by :mod:`gimel_core.analysis`.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import analysis, dedup, defaults, keys, looks, paging, plans, settings
from .cache import Cache, Caches
from .errors import Conflict, InvalidFields, InvalidInput, StoreUnavailable, UnknownExperiment
from .paging import Budget, Page
from .results import Abuse, ExperimentCounts, ExperimentResult, History, HistoryPoint, Listing
from .storage import read
from .storage.clear import clear
from .storage.plan import Undeclared, declare
from .storage.schema import DAY, ClearAction, ClearTag, Meta
from .storage.settings import set_fields
from .store import StoreBacked
from .vocabulary import Mode, Moment

if TYPE_CHECKING:
    from .config import Config
    from .storage.runner import Scripts

_CLEAR_ATTEMPTS = 20


class Experiments(StoreBacked):
    """The experiments stored in one Redis; what this process analysed is kept in ``caches``
    (the app's, or its own)."""

    def __init__(
        self,
        scripts: Scripts,
        config: Config,
        clock: Callable[[], float] = time.time,
        caches: Caches | None = None,
    ) -> None:
        super().__init__(scripts, config, clock)
        self.caches = Caches() if caches is None else caches

    # -- reading -----------------------------------------------------------------------

    def listing(
        self,
        namespace: str,
        archived: bool = False,
        page: Page = paging.FIRST,
        budget: Budget | None = None,
    ) -> Listing:
        """One page of a namespace's experiments by name (with archived ones if asked), and
        the abuse counts; ``next`` set while more remain.

        A few round trips whatever the number of experiments: their names, then the data of
        the experiments after the cursor, in reads sized by the ``budget`` (see
        :meth:`_page`), until the page is full.
        """
        pipe = self.client.pipeline(transaction=False)
        for key in keys.registries(namespace):
            pipe.smembers(key)
        pipe.hgetall(keys.abuse())
        *shards, abuse = pipe.execute()
        names = sorted(_text(name) for members in shards for name in members)
        if page.after is not None:
            names = names[bisect.bisect_right(names, page.after) :]
        # Archived ones are read with the rest and left out then: few are, and a separate
        # read of every experiment's flags cost more than reading them.
        found, more = self._page(
            namespace,
            names,
            page.limit,
            budget,
            lambda exp: exp.exists and (archived or not exp.settings.archived),
        )
        after = paging.encode(found[-1].experiment) if more and found else None
        return Listing(found, _abuse(abuse), next=after)

    def scoped(
        self,
        namespace: str,
        names: list[str],
        scope: str,
        page: Page = paging.FIRST,
        budget: Budget | None = None,
    ) -> Listing:
        """One page of the named experiments, in the scope's order (unknown ones with no
        goals), and the abuse counts; ``next`` set while more remain."""
        start = page.offset()
        found, more = self._page(namespace, names[start:], page.limit, budget, lambda _: True)
        after = paging.encode(str(start + len(found))) if more else None
        return Listing(found, _abuse(self.client.hgetall(keys.abuse())), scope, after)

    def _page(
        self,
        namespace: str,
        names: list[str],
        limit: int,
        budget: Budget | None,
        keep: Callable[[ExperimentResult], bool],
    ) -> tuple[list[ExperimentResult], bool]:
        """The first ``limit`` experiments of ``names`` that ``keep`` keeps and the budget
        holds, and whether any remain. Read a few at a time, as many as the budget says may
        still fit (one round trip each, a handful per page), so that a page of big
        experiments reads little more than it holds."""
        found: list[ExperimentResult] = []
        todo, last = names, 0
        while todo and len(found) < limit:
            wanted = limit - len(found)
            last = budget.reads(wanted, last) if budget else wanted
            chunk, todo = todo[:last], todo[last:]
            for exp, texts in self._results_encoded(namespace, chunk):
                if not keep(exp):
                    continue
                if len(found) == limit or (budget and not budget.fits(exp, texts)):
                    return found, True
                found.append(exp)
        return found, bool(todo)

    def experiment(self, namespace: str, name: str) -> ExperimentResult:
        (result,) = self._results(namespace, [name])
        if not result.exists:
            raise UnknownExperiment(name)
        return result

    def results(self, namespace: str, names: Iterable[str]) -> list[ExperimentResult]:
        """Each named experiment's results (one that does not exist: ``exists`` False), in one
        round trip."""
        return self._results(namespace, names)

    def counts(self, namespace: str, names: Iterable[str]) -> list[ExperimentCounts]:
        """What is stored of each named experiment: one round trip for any number."""
        names = list(names)
        raws = self.scripts.run([read.read(namespace, exp) for exp in names]) if names else []
        return self._counts(namespace, names, [read.stored(raw) for raw in raws])

    def _counts(
        self, namespace: str, names: list[str], stored: list[read.Stored]
    ) -> list[ExperimentCounts]:
        now = self.clock()
        return [
            _experiment_counts(exp, one, now, self.caches.snapshots)
            for exp, one in zip(names, stored, strict=True)
        ]

    def _results(self, namespace: str, names: Iterable[str]) -> list[ExperimentResult]:
        return [result for result, _ in self._results_encoded(namespace, names)]

    def _results_encoded(
        self, namespace: str, names: Iterable[str]
    ) -> list[tuple[ExperimentResult, Texts | None]]:
        """Each experiment's results: one round trip, and the statistics only for those whose
        stored data changed since this process last analysed them (``caches.analysed``); with
        each, where its JSON is kept once encoded (None: not kept, it changes with time)."""
        names = list(names)
        raws = self.scripts.run([read.read(namespace, exp) for exp in names]) if names else []
        now = self.clock()
        today = int(now) // DAY  # a closed day is a group-sequential look: new results
        found: dict[str, tuple[ExperimentResult, Texts | None]] = {}
        missed = []
        for name, raw in zip(names, raws, strict=True):
            hit = self.caches.analysed.get((namespace, name, raw, today))
            if hit is None:
                missed.append((name, raw))
                continue
            counts, result, texts = hit
            if analysis.plans_ahead(counts):
                counts = replace(counts, elapsed_days=_days(counts.reset_at or counts.created, now))
                found[name] = analysis.replan(result, counts), None
            else:
                found[name] = result, texts
        if missed:
            stored = [read.stored(raw) for _, raw in missed]
            fresh = self._counts(namespace, [name for name, _ in missed], stored)
            for (name, raw), one, counts in zip(missed, stored, fresh, strict=True):
                result = analysis.analyse(counts, self.caches)
                kept: Texts | None = None
                if one.meta:  # an experiment that exists: its reply says it all
                    kept = _remember(
                        self.caches.analysed, (namespace, name, raw, today), counts, result
                    )
                found[name] = result, None if analysis.plans_ahead(counts) else kept
        return [found[name] for name in names]

    def history(self, namespace: str, name: str) -> History:
        """One point per UTC day the experiment received events, then now: one round trip."""
        (counts,) = self.counts(namespace, [name])
        if counts.counting is None:
            raise UnknownExperiment(name)
        today = int(self.clock()) // DAY
        days, kept = analysis.analyse_history(counts, today, self.caches)
        points = [HistoryPoint(_date(day), result) for day, result in days]
        return History(name, counts.settings.analysis, points, kept)

    def ping(self) -> bool:
        return bool(self.client.ping())

    # -- changing ----------------------------------------------------------------------

    def declare(
        self,
        namespace: str,
        experiment: str,
        body: Any,
        dry_run: bool = False,
        drop_undeclared: bool = False,
    ) -> tuple[ExperimentResult, bool]:
        """Validate and store a plan (PUT); the experiment then, and whether it is new.

        Conflict (nothing written) if a variant or goal already counted is not in it, unless
        ``drop_undeclared`` and no plan was declared before: then what public traffic counted
        outside the plan is removed. A dry run writes nothing and answers the same: it reads
        the counted names and compares them as plan.lua would (:func:`plans.left_out`).
        """
        config = self.config
        # The caps bound what visitors can create; a plan may list as many names as the
        # defaults allow even where the caps were lowered.
        most_variants = max(config.max_variants, defaults.MAX_VARIANTS)
        plan = plans.parse(body, most_variants, max(config.max_goals, defaults.MAX_GOALS))
        new = (config.counting, config.dedup_window, plan.analysis or config.analysis)
        now = self.clock()
        (raw,) = self.scripts.run([read.read(namespace, experiment)])
        before = read.stored(raw)
        _check_summed(plan, before.meta.get(Meta.COUNTING), config.counting)
        self._keep_design(experiment, before, plan, now)
        _keep_sums(experiment, before, plan)
        if dry_run:
            missing = plans.left_out(plan, before.variants, before.goals)
            declared = Meta.PLAN in before.meta
            if any(missing) and (declared or not drop_undeclared):
                raise plans.refusal(experiment, *missing, declared=declared)
            if any(missing):
                before = plans.without_undeclared(before, plan)
            after = plans.stored_with(before, experiment, plan, new, int(now), int(now) // DAY)
            counts = _experiment_counts(experiment, after, now, self.caches.snapshots)
            return analysis.analyse(counts, self.caches), not before.meta
        call = declare(
            namespace,
            experiment,
            new,
            int(now),
            plan.variants,
            plan.goal_names,
            plans.meta_fields(plan),
            drop_undeclared,
        )
        reply = self.scripts.run_one(call)
        if isinstance(reply, Undeclared):
            declared = self.client.hexists(keys.meta(namespace, experiment), Meta.PLAN)
            raise plans.refusal(experiment, reply.variants, reply.goals, bool(declared))
        # The namespace is known from now on, whatever the cap on namespaces: events in it
        # are admitted (its own slot in a cluster, so a second command).
        self.client.sadd(keys.namespaces(), namespace)
        return self.experiment(namespace, experiment), reply.created

    def _keep_design(
        self, experiment: str, before: read.Stored, plan: plans.Plan, now: float
    ) -> None:
        """Conflict if ``plan`` changes the design of a group-sequential test that has taken a
        look: new bounds or a new family over the same counts would test them again (a look
        that missed its bound could pass a new one), so the design holds until a reset."""
        current = before.meta.get(Meta.PLAN)
        field = plans.design_change(plans.decode(current), plan) if current else None
        if field is None:
            return
        counts = _experiment_counts(experiment, before, now, self.caches.snapshots)
        control = analysis.choose_control(counts.variants, counts.settings.control)
        taken = looks.schedule(counts, control)
        if taken is not None and taken.days:
            raise Conflict(
                f"{experiment!r} is analysed group-sequentially and took its first look on "
                f"{looks.date(taken.days[0])}: its {field} cannot change, or the same counts "
                "would be tested again; reset the experiment to start a new design",
                {"field": field},
            )

    def update_settings(self, namespace: str, experiment: str, body: Any) -> None:
        """Validate and store control, weights, description, archived (PATCH)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.smembers(keys.variants(namespace, experiment))
        pipe.hget(keys.meta(namespace, experiment), Meta.PLAN)
        variants, plan = pipe.execute()
        if plan and isinstance(body, dict):
            governed = sorted(set(body) & set(plans.GOVERNED))
            if governed:
                raise Conflict(
                    f"{governed[0]!r} of {experiment!r} is set by its plan: change the plan "
                    "(PUT /experiments/<name> or gimel plan apply)",
                    {"field": governed[0]},
                )
            variants = plans.decode(_text(plan)).variants
        if not variants:
            raise UnknownExperiment(experiment)
        fields = settings.parse(body, (_text(v) for v in variants))
        if not self.scripts.run_one(set_fields(namespace, experiment, fields)):
            raise UnknownExperiment(experiment)

    def delete(self, namespace: str, experiment: str) -> None:
        """Delete an experiment and all its counters atomically; UnknownExperiment if absent."""
        self._clear(ClearAction.DELETE, namespace, experiment)

    def reset(self, namespace: str, experiment: str) -> None:
        """Zero an experiment's counters atomically, keeping its settings and names."""
        self._clear(ClearAction.RESET, namespace, experiment)

    def _clear(self, action: ClearAction, namespace: str, experiment: str) -> None:
        for _ in range(_CLEAR_ATTEMPTS):
            pipe = self.client.pipeline(transaction=False)
            pipe.hget(keys.meta(namespace, experiment), Meta.WINDOW)
            pipe.smembers(keys.variants(namespace, experiment))
            pipe.smembers(keys.goals(namespace, experiment))
            raw_window, raw_variants, raw_goals = pipe.execute()
            variants, goals = sorted(raw_variants), sorted(raw_goals)
            names = tuple(_text(v) for v in variants), tuple(_text(g) for g in goals)
            window = int(raw_window) if raw_window else self.config.dedup_window
            now = self.clock()
            data_keys = [
                *(keys.hll(namespace, experiment, g, v) for g, v in _counters(*names)),
                keys.counts(namespace, experiment),
                keys.history(namespace, experiment),
                keys.hll_index(namespace, experiment),
                keys.alerts(namespace, experiment),
                keys.deliveries(namespace, experiment),
            ]
            buckets = [
                keys.seen(namespace, experiment, b) for b in dedup.stored_buckets(window, now)
            ]
            call = clear(
                action, namespace, experiment, variants, goals, data_keys, int(now), buckets
            )
            result = self.scripts.run_one(call)
            if result is ClearTag.MISSING:
                raise UnknownExperiment(experiment)
            if result is ClearTag.DONE:
                return
            # CHANGED: a new variant or goal arrived meanwhile, so read again
        raise StoreUnavailable(f"the experiment kept changing during {action}; try again")


def _check_summed(plan: plans.Plan, recorded: str | None, default: str) -> None:
    """400 for value goals or a covariate on an experiment counted in hll mode (``recorded``;
    None: a new one, counted in the ``default`` mode): hll cannot tell a re-sent event."""
    if not plan.summed or (recorded or default) != Mode.HLL:
        return
    counted = "this experiment counts" if recorded else "new experiments count (GIMEL_COUNTING)"
    why = (
        f"needs exact counting, and {counted} in hll mode, which keeps no uuid to tell a "
        "re-sent event from a new one: its value would be added twice"
    )
    problems = [
        InvalidInput(f"goals[{i}].type", f"a value goal {why}")
        for i, goal in enumerate(plan.goals)
        if goal.valued
    ]
    if plan.covariate:
        problems.append(InvalidInput("covariate", f"a covariate {why}"))
    raise InvalidFields(problems)


def _keep_sums(experiment: str, before: read.Stored, plan: plans.Plan) -> None:
    """409 if ``plan`` changes what the sums of an experiment that counted events mean (a goal's
    type, cap or negative, or the covariate): they would mix two meanings until a reset.
    An experiment no plan declared yet counted binary goals and no covariate."""
    if not any(before.counts.values()):
        return
    raw = before.meta.get(Meta.PLAN)
    current = plans.decode(raw) if raw else None
    changed = None
    if (current.covariate if current else None) != plan.covariate:
        changed = "covariate"
    for i, goal in enumerate(plan.goals):
        was = current.goal(goal.name) if current else None
        if was is None:  # new to the plan: counted before only if public traffic sent it
            was = plans.PlannedGoal(goal.name) if goal.name in before.goals else goal
        for field in ("type", "cap", "negative"):
            if changed is None and getattr(was, field) != getattr(goal, field):
                changed = f"goals[{i}].{field}"
    if changed is not None:
        raise Conflict(
            f"{experiment!r} has counted events: its {changed} cannot change, or its sums would "
            "mix two meanings; reset the experiment first",
            {"field": changed},
        )


def _experiment_counts(
    name: str, stored: read.Stored, now: float, snapshots: Cache[str, Mapping[str, int]]
) -> ExperimentCounts:
    meta, variants, goals = stored.meta, stored.variants, stored.goals
    declared = settings.stored(meta)
    if declared.plan is not None:  # its plan's names, counted yet or not
        variants = tuple(sorted({*variants, *declared.plan.variants}))
        goals = tuple(sorted({*goals, *declared.plan.goal_names}))
    mode = meta.get(Meta.COUNTING)
    cells = _counters(variants, goals)
    table = {(g, v): int(stored.counts.get(keys.counts_field(g, v), 0)) for g, v in cells}
    # Sums exist only where a plan declares them (exact counting): other reads skip the lookups.
    summed = mode == Mode.EXACT and declared.plan is not None and declared.plan.summed
    moments = _moments(stored.counts, cells) if summed else {}
    created, reset_at = _timestamp(meta.get(Meta.CREATED)), _timestamp(meta.get(Meta.RESET_AT))
    return ExperimentCounts(
        name=name,
        counting=Mode(mode) if mode else None,
        variants=variants,
        goals=goals,
        counts=table if mode else {},
        moments=moments,
        settings=declared,
        dedup_window=_window(meta) if mode == Mode.EXACT else None,
        created=created,
        reset_at=reset_at,
        history=_history(stored.history, variants, goals, snapshots),
        history_moments=_history_moments(stored.history, cells, snapshots) if summed else {},
        elapsed_days=_days(reset_at or created, now),
        last_day=int(meta[Meta.DAY]) if meta.get(Meta.DAY) else None,
        today=int(now) // DAY,
    )


def _days(since: int | None, now: float) -> float | None:
    """Days from ``since`` (the experiment's creation, or its last reset) to ``now``."""
    return None if since is None else max(0.0, now - since) / DAY


Texts = dict[bool, str]
"""An experiment's results encoded as the API answers them, by ``summary``: kept with its
analysis, so an unchanged experiment is not encoded again either (``paging.Budget.fits``)."""


def _remember(
    analysed: Cache[tuple[str, str, bytes, int], Any],
    key: tuple[str, str, bytes, int],
    counts: ExperimentCounts,
    result: ExperimentResult,
) -> Texts | None:
    """Keep an analysis by the reply it came from; where its JSON will be kept once encoded
    (None: not kept, too big or kept already)."""
    texts: Texts = {}
    return texts if analysed.put(key, (counts, result, texts)) else None


def _counters(variants: tuple[str, ...], goals: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every (goal, variant) counter of an experiment, participation first."""
    return [(goal, variant) for goal in (defaults.PARTICIPATE, *goals) for variant in variants]


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).date().isoformat()


def _history(
    raw: dict[str, str],
    variants: tuple[str, ...],
    goals: tuple[str, ...],
    snapshots: Cache[str, Mapping[str, int]],
) -> tuple[tuple[int, dict[tuple[str, str], int]], ...]:
    """Daily snapshots, oldest first, as (goal, variant) counts (0 where not counted yet)."""
    if not raw:
        return ()
    fields = {keys.counts_field(g, v): (g, v) for g, v in _counters(variants, goals)}
    days = []
    for day, snapshot in sorted((int(d), s) for d, s in raw.items()):
        stored = _decoded(snapshot, snapshots)
        days.append((day, {cell: int(stored.get(f, 0)) for f, cell in fields.items()}))
    return tuple(days)


def _moments(
    stored: Mapping[str, float], cells: list[tuple[str, str]]
) -> dict[tuple[str, str, str], float]:
    """The sums among a counts hash's fields (or a day's snapshot of it): only those kept."""
    found = {}
    for goal, variant in cells:
        for moment in Moment:
            value = stored.get(keys.moment_field(goal, variant, moment))
            if value is not None:
                found[goal, variant, moment.value] = float(value)
    return found


def _history_moments(
    raw: dict[str, str], cells: list[tuple[str, str]], snapshots: Cache[str, Mapping[str, int]]
) -> dict[int, dict[tuple[str, str, str], float]]:
    """Each recorded day's sums (days without any left out)."""
    days = {}
    for day, snapshot in raw.items():
        found = _moments(_decoded(snapshot, snapshots), cells)
        if found:
            days[int(day)] = found
    return days


def _decoded(snapshot: str, snapshots: Cache[str, Mapping[str, int]]) -> Mapping[str, int]:
    """A day's snapshot, kept in ``snapshots``: it never changes once written."""
    decoded = snapshots.get(snapshot)
    if decoded is None:
        decoded = json.loads(snapshot)
        snapshots.put(snapshot, decoded)
    return decoded


def _abuse(raw: dict[Any, Any]) -> Abuse:
    counts = {_text(k): int(v) for k, v in raw.items()}
    dropped = {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if ":" in k}
    return Abuse(counts.get("filtered", 0), dropped)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _timestamp(raw: str | None) -> int | None:
    return int(raw) if raw else None


def _window(meta: Mapping[str, str]) -> int | None:
    """An exact experiment's de-dup window, seconds; None when it remembers uuids for life."""
    return int(meta.get(Meta.WINDOW) or dedup.LIFE) or None
