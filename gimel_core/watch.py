"""The watcher: a pass over every experiment that announces what changed, once, and delivers it.

A pass (:meth:`Watcher.run`) goes over each namespace's experiments a chunk at a time, in a
few round trips per chunk whatever its size:

1. **claim**: a lease per experiment (``watch_claim.lua``: taken when free, renewed by the
   watcher that holds it; it expires after :data:`LEASE`) and what the last pass remembered
   (``keys.alerts``). An experiment another watcher holds is left to it:
   two watchers at once (``gimel serve`` and a cron job, two Lambda invocations) never check
   or deliver the same experiment together;
2. **read** the results, as ``GET /experiments`` computes them, and **look** at them
   (:mod:`.checks`);
3. **save** the new alerts, each with one delivery due per destination, before anything is
   sent (``watch_save.lua``, only while the lease holds): an alert noticed is never lost, and
   a crash after this point sends it on a later pass;
4. **deliver** what is due (:func:`.notify.deliver`), per experiment and destination in the
   order the alerts were announced: a failed delivery is retried with backoff
   (:func:`.notify.backoff`) at later passes, and the alerts after it wait behind it; after
   :data:`.notify.ATTEMPTS` attempts, or an answer that will not change (a 404, a redirect),
   it is recorded as failed and the next goes;
5. **record** each attempt in the experiment's delivery log, drop the delivered ones from
   what is due, and give the lease up.

A delivery is sent only by the lease's holder and dropped from what is due in the same
script that releases the lease, so a receiver gets each alert once. When Redis is lost
between a receiver's 200 and step 5, the watcher keeps the record and writes it at its next
pass (its leases are still its own) instead of sending again. The one exception is a watcher
killed in that moment: its lease expires and a later pass sends that alert again, with the
same ``id`` (a receiver drops an id it has seen).
Deliveries stop for the pass after :data:`DELIVERY_BUDGET` seconds, well inside the lease;
what is left is due at the next pass.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import defaults, keys, notify
from .alerts import Alert
from .checks import SILENT_AFTER, Memory, look
from .errors import StoreUnavailable
from .notify import Delivery, Destination, Slack
from .results import ExperimentResult
from .storage.runner import text as _text
from .storage.schema import WatchTag
from .storage.watch_claim import claim
from .storage.watch_save import save
from .store import unavailable

if TYPE_CHECKING:
    from .config import Config
    from .experiments import Experiments

log = logging.getLogger(__name__)

LEASE = 600
"""Seconds a watcher's lease on an experiment lasts: longer than a pass spends on it."""
DELIVERY_BUDGET = 240.0
"""Seconds a pass spends delivering at most; the rest is due at the next pass."""
CHUNK = 200
"""Experiments claimed and read together (one round trip each)."""
LOG_MOST = 200
"""Delivery attempts an experiment's log keeps."""

# Fields of the alerts hash (keys.alerts).
SRM_P = "srm_p"
EVENTS = "events"
EVENTS_AT = "events_at"
SEQUENCE = "sequence"
"""The last alert's number: alerts are delivered in the order of their numbers."""
SENT = "alert:"
"""``alert:<number>`` -> the alert's JSON (what was announced)."""
DUE = "due:"
"""``due:<number>:<destination>`` -> a delivery to make: attempts so far, when to try next."""


def destination_name(destination: Destination) -> str:
    """How a destination is named in what is due: by its kind, so a new URL takes over."""
    return "slack" if isinstance(destination, Slack) else "webhook"


@dataclass
class Report:
    """What one pass did."""

    experiments: int = 0
    """Experiments checked."""
    held: int = 0
    """Experiments left alone: another watcher held them."""
    alerts: int = 0
    """New alerts announced."""
    delivered: int = 0
    retrying: int = 0
    """Deliveries that failed and will be tried again."""
    failed: int = 0
    """Deliveries given up (out of attempts, or refused for good)."""
    errors: list[str] = field(default_factory=list)
    """Namespaces the pass could not finish, and why (Redis unreachable...)."""

    def line(self) -> str:
        text = (
            f"watched {self.experiments} experiments ({self.held} held by another watcher): "
            f"{self.alerts} new alerts, {self.delivered} delivered, {self.retrying} to retry, "
            f"{self.failed} failed"
        )
        return text + "".join(f"; {error}" for error in self.errors)


@dataclass
class _Experiment:
    """One claimed experiment during a pass."""

    name: str
    fields: dict[str, str]
    result: ExperimentResult | None = None
    epoch: str = ""
    sets: dict[str, str] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    release: bool = True
    """Give the lease up at the next save."""


class Watcher:
    """Checks every experiment in one Redis and delivers its alerts; one per process."""

    def __init__(
        self,
        experiments: Experiments,
        destinations: Sequence[Destination] = (),
        *,
        silent_after: int = SILENT_AFTER,
        dashboard_url: str | None = None,
        timeout: float = defaults.WEBHOOK_TIMEOUT,
        clock: Callable[[], float] | None = None,
        budget: float = DELIVERY_BUDGET,
    ) -> None:
        self.experiments = experiments
        self.client = experiments.client
        self.destinations = {destination_name(d): d for d in destinations}
        self.silent_after = silent_after
        self.dashboard_url = dashboard_url
        self.timeout = timeout
        self.clock = experiments.clock if clock is None else clock
        self.budget = budget
        self.token = secrets.token_hex(16)
        """This watcher's leases: a pass renews what an earlier one of its own still holds."""
        self._unsaved: dict[tuple[str, str], tuple[dict[str, str], list[str], list[str]]] = {}
        """Deliveries made whose record Redis could not take (lost mid-pass): written by the
        next pass that claims the experiment, instead of sending them again."""

    @classmethod
    def configured(cls, experiments: Experiments, config: Config) -> Watcher:
        """The watcher ``config`` describes (``GIMEL_WEBHOOK_URL``, ``GIMEL_SLACK_WEBHOOK_URL``,
        ``GIMEL_WATCH_SILENT_HOURS``, ``GIMEL_DASHBOARD_URL``)."""
        return cls(
            experiments,
            notify.destinations(config),
            silent_after=config.watch_silent_hours * 3600,
            dashboard_url=config.dashboard_url,
            timeout=config.webhook_timeout,
        )

    # -- a pass ----------------------------------------------------------------------------

    def run(self, deadline: float | None = None) -> Report:
        """One pass over every experiment of every namespace. ``deadline``: a
        ``time.monotonic()`` after which no delivery starts (a Lambda's remaining time)."""
        report = Report()
        token = self.token
        stop = time.monotonic() + self.budget
        if deadline is not None:
            stop = min(stop, deadline)
        try:
            with unavailable():
                namespaces = sorted(_text(n) for n in self.client.smembers(keys.namespaces()))
        except StoreUnavailable as exc:
            report.errors.append(str(exc))
            return report
        for namespace in namespaces:
            try:
                for chunk in self._chunks(namespace):
                    self._pass(namespace, chunk, token, stop, report)
            except StoreUnavailable as exc:
                report.errors.append(f"namespace {namespace!r}: {exc}")
        log.info("watch pass: %s", report.line())
        return report

    def _chunks(self, namespace: str) -> Iterator[list[str]]:
        with unavailable():
            pipe = self.client.pipeline(transaction=False)
            for key in keys.registries(namespace):
                pipe.smembers(key)
            names = sorted(_text(n) for members in pipe.execute() for n in members)
        for start in range(0, len(names), CHUNK):
            yield names[start : start + CHUNK]

    def _pass(
        self, namespace: str, names: list[str], token: str, stop: float, report: Report
    ) -> None:
        claimed = self._claim(namespace, names, token)
        report.held += len(names) - len(claimed)
        if not claimed:
            return
        results = self.experiments.results(namespace, [exp.name for exp in claimed])
        now = int(self.clock())
        for exp, result in zip(claimed, results, strict=True):
            exp.result = result
            exp.epoch = str(result.reset_at or result.created or "")
            if result.exists and not result.settings.archived:
                report.experiments += 1
                self._look(namespace, exp, now, report)
        # Saved before anything is sent: an alert noticed is never lost. Experiments with
        # nothing to deliver now give their lease up in the same call.
        for exp in claimed:
            exp.release = not self._due_now(exp, now)
        self._save(namespace, claimed, token)
        sending = [exp for exp in claimed if not exp.release and exp.result is not None]
        for exp in sending:
            self._deliver(exp, stop, report)
            exp.release = True
        if sending:
            self._save(namespace, sending, token)

    def _claim(self, namespace: str, names: list[str], token: str) -> list[_Experiment]:
        """The experiments of ``names`` whose lease this pass holds, with what they remember
        (and what an earlier pass of this watcher could not write)."""
        calls = [claim(namespace, name, token, LEASE * 1000) for name in names]
        with unavailable():
            replies = self.experiments.scripts.run(calls)
        claimed = []
        for name, fields in zip(names, replies, strict=True):
            if fields is None:
                continue
            exp = _Experiment(name, fields)
            unsaved = self._unsaved.pop((namespace, name), None)
            if unsaved is not None:
                sets, deletes, records = unsaved
                fields.update(sets)
                for key in deletes:
                    fields.pop(key, None)
                exp.sets, exp.deletes, exp.records = dict(sets), list(deletes), list(records)
            claimed.append(exp)
        return claimed

    def _look(self, namespace: str, exp: _Experiment, now: int, report: Report) -> None:
        assert exp.result is not None
        memory = _memory(exp.fields)
        findings = look(
            exp.result,
            memory,
            now,
            silent_after=self.silent_after,
            dashboard_url=self.dashboard_url,
            namespace=namespace,
        )
        kept = findings.memory
        exp.sets[SRM_P] = repr(kept.srm_p_value)
        exp.sets[EVENTS] = str(kept.events)
        exp.sets[EVENTS_AT] = str(kept.events_at)
        number = int(exp.fields.get(SEQUENCE, 0))
        for alert in findings.alerts:
            number += 1
            report.alerts += 1
            exp.sets[f"{SENT}{number:09d}"] = json.dumps(alert.to_json(), separators=(",", ":"))
            for name in self.destinations:
                due = {"attempts": 0, "retry_at": now}
                exp.sets[f"{DUE}{number:09d}:{name}"] = json.dumps(due)
        exp.sets[SEQUENCE] = str(number)
        exp.fields.update(exp.sets)

    def _due_now(self, exp: _Experiment, now: int) -> bool:
        if exp.result is None or not exp.result.exists:
            return False
        return any(json.loads(v)["retry_at"] <= now for k, v in _due(exp.fields))

    def _deliver(self, exp: _Experiment, stop: float, report: Report) -> None:
        """Each destination's due deliveries in the alerts' order; a failure that will be
        retried holds the ones after it back."""
        blocked: set[str] = set()
        for key, raw in _due(exp.fields):
            _, number, name = key.split(":")
            if name in blocked:
                continue
            due = json.loads(raw)
            now = int(self.clock())
            destination = self.destinations.get(name)
            alert_json = exp.fields.get(f"{SENT}{number}")
            if destination is None or alert_json is None:  # no longer configured: not sent
                exp.deletes.append(key)
                continue
            if due["retry_at"] > now or time.monotonic() >= stop:
                blocked.add(name)
                continue
            alert = _alert(alert_json)
            record = notify.deliver(
                destination,
                alert,
                attempt=due["attempts"] + 1,
                timeout=self.timeout,
                clock=self.clock,
            )
            exp.records.append(json.dumps(_logged(record, alert), separators=(",", ":")))
            if record.ok:
                report.delivered += 1
                exp.deletes.append(key)
            elif record.retry_at is not None:
                report.retrying += 1
                exp.sets[key] = json.dumps(
                    {"attempts": record.attempt, "retry_at": record.retry_at}
                )
                blocked.add(name)
            else:
                report.failed += 1
                exp.deletes.append(key)

    def _save(self, namespace: str, exps: list[_Experiment], token: str) -> None:
        calls = [
            save(
                namespace,
                exp.name,
                token,
                exp.epoch,
                set_fields=exp.sets if exp.result is not None and exp.result.exists else {},
                delete_fields=[k for k in exp.deletes if k not in exp.sets],
                log=exp.records,
                log_most=LOG_MOST,
                release=exp.release,
            )
            for exp in exps
        ]
        try:
            with unavailable():
                tags = self.experiments.scripts.run(calls)
        except StoreUnavailable:  # kept for the next pass: nothing delivered is sent again
            for exp in exps:
                if exp.sets or exp.deletes or exp.records:
                    self._unsaved[namespace, exp.name] = (exp.sets, exp.deletes, exp.records)
            raise
        for exp, tag in zip(exps, tags, strict=True):
            if tag is not WatchTag.SAVED:  # held by another now, or deleted/reset: forget it
                exp.result = None
            exp.sets, exp.deletes, exp.records = {}, [], []

    # -- reading what was announced -------------------------------------------------------

    def log(self, namespace: str, experiment: str) -> dict[str, Any]:
        """What was announced for an experiment, oldest first, and its latest delivery
        attempts, newest first (empty for an experiment that does not exist)."""
        found = delivery_log(self.experiments, namespace, experiment)
        return found or {"experiment": experiment, "alerts": [], "deliveries": []}


def delivery_log(
    experiments: Experiments, namespace: str, experiment: str
) -> dict[str, Any] | None:
    """:meth:`Watcher.log`, or None when the experiment does not exist: what ``GET
    /experiments/<name>/alerts`` answers (404 then), in one round trip. Destinations are
    named as the log keeps them: by kind, or by :func:`.notify.redact`'s URL."""
    with unavailable():
        pipe = experiments.client.pipeline(transaction=False)
        pipe.exists(keys.meta(namespace, experiment))
        pipe.hgetall(keys.alerts(namespace, experiment))
        pipe.lrange(keys.deliveries(namespace, experiment), 0, LOG_MOST - 1)
        exists, fields, records = pipe.execute()
    if not exists:
        return None
    fields = {_text(k): _text(v) for k, v in fields.items()}
    pending: dict[str, list[dict[str, Any]]] = {}
    for key, raw in _due(fields):
        _, number, name = key.split(":")
        pending.setdefault(number, []).append({"destination": name, **json.loads(raw)})
    announced = [
        {**json.loads(raw), "pending": pending.get(key.removeprefix(SENT), [])}
        for key, raw in sorted(fields.items())
        if key.startswith(SENT)
    ]
    return {
        "experiment": experiment,
        "alerts": announced,
        "deliveries": [json.loads(_text(r)) for r in records],
    }


def _memory(fields: dict[str, str]) -> Memory:
    announced = frozenset(
        json.loads(raw)["id"] for key, raw in fields.items() if key.startswith(SENT)
    )
    events, events_at = fields.get(EVENTS), fields.get(EVENTS_AT)
    return Memory(
        announced=announced,
        srm_p_value=float(fields.get(SRM_P, 1.0)),
        events=None if events is None else int(events),
        events_at=None if events_at is None else int(events_at),
    )


def _due(fields: dict[str, str]) -> list[tuple[str, str]]:
    """The deliveries due, in the order their alerts were announced."""
    return sorted((k, v) for k, v in fields.items() if k.startswith(DUE))


def _alert(raw: str) -> Alert:
    return Alert.from_json(json.loads(raw))


def _logged(record: Delivery, alert: Alert) -> dict[str, Any]:
    return {**record.to_json(), "kind": alert.kind.value}
