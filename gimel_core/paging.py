"""Pages of ``GET /experiments``: how many experiments, from where, in how many bytes.

A page holds at most ``limit`` experiments, in name order, after its ``cursor``. It ends
sooner, holding one at least, before its experiments pass either budget: their bytes,
encoded as the API answers them (:data:`~gimel_core.defaults.PAGE_BUDGET`), or their
counters, read and analysed (:data:`~gimel_core.defaults.PAGE_COUNTERS`). However many
variants, goals and long names they have, no answer grows past a few megabytes or seconds.
``meta.next`` is the cursor of the following page, only while more remain.

A cursor is opaque to clients: the base64url of the last name a page returned (for a
``scope``, of how many of its names were answered), so the next page starts where this one
ended even if experiments were created or deleted in between.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import defaults
from .errors import InvalidInput
from .events import check_name

if TYPE_CHECKING:  # the API's results: the tracking path never loads them
    from .results import ExperimentResult

_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,1024}")
_DIGITS = re.compile(r"[0-9]{1,9}")
_LIMIT = re.compile(r"[0-9]{1,4}")
KEPT_TEXT = 65_536
"""Longest encoded experiment kept for the next page (most are a few kilobytes)."""
FIRST_READ = 4
"""Experiments read in a page's first round trip; later reads are sized by what they took."""


@dataclass(frozen=True, slots=True)
class Page:
    """Which page: at most ``limit`` experiments after ``after`` (a name, or for a scope
    the number of its names already answered, as a decimal string)."""

    limit: int = defaults.PAGE_LIMIT
    after: str | None = None

    def offset(self) -> int:
        """Where a scope's page starts; InvalidInput for a cursor of a listing."""
        if self.after is None:
            return 0
        if not _DIGITS.fullmatch(self.after):
            raise InvalidInput("cursor", _BAD_CURSOR)
        return int(self.after)


FIRST = Page()
"""The first page, of the default size."""

_BAD_CURSOR = "'cursor' is not a cursor of this listing: pass meta.next of the previous page as is"


def parse(values: Mapping[str, str]) -> Page:
    """The page a query asks for (``limit``, ``cursor``); InvalidInput naming the field."""
    raw = values.get("limit")
    limit = defaults.PAGE_LIMIT
    if raw is not None:
        if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= defaults.PAGE_MAX_LIMIT:
            raise InvalidInput(
                "limit", f"'limit' must be a whole number from 1 to {defaults.PAGE_MAX_LIMIT}"
            )
        limit = int(raw)
    cursor = values.get("cursor")
    return Page(limit, None if cursor is None else decode(cursor))


def encode(after: str) -> str:
    """The cursor of the page after ``after``: base64url, without padding."""
    return base64.urlsafe_b64encode(after.encode()).rstrip(b"=").decode()


def decode(cursor: str) -> str:
    """The name (or scope offset) a cursor holds; InvalidInput for anything else."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidInput("cursor", _BAD_CURSOR)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("cursor", _BAD_CURSOR) from None
    try:
        if check_name("cursor", after) != after:  # a name as stored: in NFC already
            raise InvalidInput("cursor", _BAD_CURSOR)
    except InvalidInput:
        raise InvalidInput("cursor", _BAD_CURSOR) from None
    return after


class Budget:
    """What a page's experiments may still take: bytes, encoded as the answer encodes them,
    and counters, read and analysed (a variant on a goal or on ``participate``), which is
    what a page's time grows with.

    ``fits`` takes experiments in page order and says whether each still fits; the first
    always does, so a page is never empty while experiments remain. ``reads`` sizes the next
    round trip by the average experiment so far, so a page reads few it cannot hold.
    """

    def __init__(
        self,
        summary: bool = False,
        size: int = defaults.PAGE_BUDGET,
        counters: int = defaults.PAGE_COUNTERS,
    ) -> None:
        self.summary = summary
        self.limits = (size, counters)
        self.used = (0, 0)
        self.taken = 0
        self.pieces: list[str] = []
        """Each experiment taken, encoded: the answer is assembled from them, not encoded
        again (:meth:`~gimel_core.results.Listing.encode`)."""

    def fits(self, exp: ExperimentResult, texts: dict[bool, str] | None = None) -> bool:
        """``texts``: where this result's encodings are kept, by ``summary``, if they are."""
        text = texts.get(self.summary) if texts is not None else None
        if text is None:
            text = json.dumps(exp.to_json(self.summary))
            if texts is not None and len(text) <= KEPT_TEXT:
                texts[self.summary] = text
        size = len(text) + 2  # ASCII, as answers are; ", " between
        took = (self.used[0] + size, self.used[1] + len(exp.participants) * (len(exp.goals) + 1))
        if self.taken and any(t > limit for t, limit in zip(took, self.limits, strict=True)):
            return False
        self.used = took
        self.taken += 1
        self.pieces.append(text)
        return True

    def reads(self, wanted: int, last: int) -> int:
        """How many experiments to read next, at most ``wanted``; ``last``: the previous read."""
        if not self.taken:
            return min(wanted, FIRST_READ)
        estimate = 1 + min(  # one more than may fit: is it the end of the page?
            math.ceil(max(limit - used, 0) * self.taken / max(used, 1))
            for used, limit in zip(self.used, self.limits, strict=True)
        )
        if estimate > last:  # growing: at least double, so that a page takes few round trips
            estimate = max(estimate, 2 * last)
        return max(1, min(wanted, estimate))
