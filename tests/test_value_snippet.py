"""A value goal and a covariate from `gimel snippet`, in a real browser, counted by a real
`gimel serve` (exact counting) with the real Alephbet 0.27.0.

Shoppers buy known amounts on pages built from `gimel snippet --value-goal purchase
--covariate orders`; the sums in the experiment's `counts` hash, read from Redis, are then the
ones computed here by hand from the same amounts and covariates. A purchase made while Redis is
down waits in Alephbet's queue and is sent again on the next page: counted once, its value
once. The servers and the browser are those of tests/test_alephbet_e2e.py.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import redis
from click.testing import CliRunner

from gimel_core import cli, keys
from gimel_core.vocabulary import Moment
from helpers import browser_unavailable, chromium
from tests.test_alephbet_e2e import (
    ALEPHBET_JS,
    NAMESPACE,
    PAGES,
    Gimel,
    Site,
    Visitor,
    check_refused,
    gimel_serve,
    queued_pairs,
    resend_on_reload,
    store_down,
)

PURCHASE_CAP = 100.0
COVARIATE_CAP = 50.0
PLAN = {
    "variants": ["red", "blue"],
    "goals": ["signup", {"name": "purchase", "type": "value", "cap": PURCHASE_CAP}],
    "covariate": {"name": "orders", "cap": COVARIATE_CAP},
}
"""Each visitor's purchase total is capped at 100, and the covariate clipped to -50..50."""


def snippet(*options: str) -> str:
    result = CliRunner().invoke(cli.main, ["snippet", "--url", "https://x.example", *options])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_snippet_adds_a_value_goal_and_the_covariate_only_when_asked() -> None:
    plain = snippet()
    assert "valueGoal" not in plain and "covariate" not in plain and "_queue.push" not in plain
    both = snippet("--value-goal", "purchase", "--covariate", "orders")
    rest = iter(both.splitlines())
    assert all(line in rest for line in plain.splitlines())  # today's page, with more in it
    assert 'new AlephBet.Goal("purchase", { unique: false })' in both
    assert "fields.value = amount" in both and "fields.covariate = x" in both
    value = snippet("--value-goal", "purchase")
    assert "valueGoal.complete" in value and "covariate" not in value
    covariate = snippet("--covariate", "orders")
    assert "fields.covariate = x" in covariate and "valueGoal" not in covariate
    # Every name is JSON-escaped: none closes the script or breaks out of its string.
    odd = snippet(
        "--value-goal", '</script>"', "--covariate", "café */</script>", "--experiment", "<"
    )
    assert odd.count("</script>") == plain.count("</script>") == 2
    assert '"\\u003c/script>\\""' in odd and '"caf\\u00e9 */\\u003c/script>"' in odd


@pytest.mark.parametrize(
    ("option", "name", "message"),
    [
        ("--value-goal", "participate", "'participate' is not a value goal"),
        ("--value-goal", "signup", "'signup' is not a value goal"),
        ("--value-goal", "", "'--value-goal' must not be empty"),
        ("--covariate", "x" * 300, "'--covariate' is longer than"),
        ("--covariate", "a\n", "'--covariate' contains control characters"),
    ],
)
def test_a_name_gimel_would_refuse_is_one_line_and_prints_no_page(
    option: str, name: str, message: str
) -> None:
    result = CliRunner().invoke(cli.main, ["snippet", option, name])
    assert result.exit_code == 1
    assert message in result.output and "<script" not in result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not ALEPHBET_JS.exists():
        browser_unavailable("node_modules/alephbet is missing: run `npm ci`")
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def site(browser: Any) -> Iterator[Site]:
    served = Site()
    yield served
    served.close()


def declare(gimel: Gimel, experiment: str) -> None:
    """PUT the plan, as `gimel plan apply` would, before any visitor comes."""
    url = f"{gimel.base}/experiments/{quote(experiment, safe='')}?namespace={NAMESPACE}"
    request = urllib.request.Request(
        url,
        data=json.dumps(PLAN).encode(),
        method="PUT",
        headers={"x-api-key": gimel.key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def shop_page(site: Site, gimel: Gimel, experiment: str, covariate: float | None) -> str:
    """A page of `gimel snippet --value-goal purchase --covariate orders`, whose backend wrote
    ``covariate`` into it (nothing for None); returns its URL."""
    result = CliRunner().invoke(
        cli.main,
        ["snippet", "--url", gimel.base, "--namespace", NAMESPACE, "--experiment", experiment]
        + ["--alephbet-src", site.origin + "/alephbet.min.js"]
        + ["--value-goal", "purchase", "--covariate", "orders"],
    )
    assert result.exit_code == 0, result.output
    html = (PAGES / "value.html").read_text().replace("{{SNIPPET}}", result.output)
    html = html.replace("{{COVARIATE}}", "" if covariate is None else repr(covariate))
    return site.add(f"/{uuid.uuid4().hex}.html", html)


def buy(visitor: Visitor, amount: float) -> None:
    """What the shop's page calls when a visitor pays."""
    visitor.page.evaluate("(amount) => valueGoal.complete(amount)", amount)


REFUSED = """(amount) => {
  try { valueGoal.complete(amount); } catch (error) { return error.message; }
}"""


def sent_values(visitor: Visitor) -> list[tuple[str, str, str, str | None]]:
    """(uuid, value, total, covariate) of each purchase the page sent, in order."""
    sent = []
    for request in visitor.requests:
        fields = dict(parse_qsl(urlsplit(request.url).query))
        if fields["event"] == "purchase":
            sent.append((fields["uuid"], fields["value"], fields["total"], fields.get("covariate")))
    return sent


def number(text: str | None) -> float | None:
    return None if text is None else float(text)


@dataclass
class Shopper:
    covariate: float | None
    """What the shop's backend knows of the visitor (None: nothing, so x counts as 0)."""
    pages: list[list[float]]
    """The amounts bought on each page view (the total lives on across them)."""
    signs_up: bool = False


def expected_sums(visits: list[tuple[str, Shopper]]) -> dict[str, float]:
    """The counts hash computed by hand: per variant, participants (n), x = sum of clipped
    covariates, x2 their squares; per goal, its count and xy = sum of x times the visitor's
    capped total (1 for a binary goal); for the value goal, y = sum of capped totals, y2 the
    sum of their squares (each visitor's total squared, not each purchase's)."""
    sums: Counter[str] = Counter()
    for variant, shopper in visits:
        x = max(-COVARIATE_CAP, min(COVARIATE_CAP, shopper.covariate or 0.0))
        amounts = [amount for page in shopper.pages for amount in page]
        total = min(PURCHASE_CAP, sum(amounts))
        sums[keys.counts_field("participate", variant)] += 1
        sums[keys.moment_field("participate", variant, Moment.X)] += x
        sums[keys.moment_field("participate", variant, Moment.X2)] += x * x
        if amounts:
            sums[keys.counts_field("purchase", variant)] += len(amounts)
            sums[keys.moment_field("purchase", variant, Moment.Y)] += total
            sums[keys.moment_field("purchase", variant, Moment.Y2)] += total * total
            sums[keys.moment_field("purchase", variant, Moment.XY)] += x * total
        if shopper.signs_up:
            sums[keys.counts_field("signup", variant)] += 1
            sums[keys.moment_field("signup", variant, Moment.XY)] += x
    return sums


def check_sums(gimel: Gimel, experiment: str, visits: list[tuple[str, Shopper]]) -> None:
    """The counts hash, as Redis holds it, is the hand-computed one (a sum of 0 may be absent)."""
    client = redis.Redis(port=gimel.redis_port(), decode_responses=True)
    try:
        stored = {
            k: float(v) for k, v in client.hgetall(keys.counts(NAMESPACE, experiment)).items()
        }
    finally:
        client.close()
    want = expected_sums(visits)
    names = sorted(stored.keys() | want.keys())
    assert {n: stored.get(n, 0.0) for n in names} == {n: want.get(n, 0.0) for n in names}
    # Every sum above is made of binary fractions (12.5, 7.25, ...): exact in floating point.


SHOPPERS = [
    Shopper(2.0, [[12.5], [30.0]]),  # buys again on another page: sends total=12.5 then
    Shopper(80.0, [[60.0, 70.0]]),  # the covariate is clipped to 50, the total capped at 100
    Shopper(None, [[20.0]]),  # no covariate: counts with x = 0
    Shopper(0.5, [[7.25, 0.75, 4.0]], signs_up=True),
    Shopper(5.0, [], signs_up=True),  # joins, signs up, buys nothing: y counts 0 for them
    Shopper(3.0, []),
]


def test_purchases_and_the_covariate_add_up_to_the_hand_computed_sums(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    experiment = "value snippet"
    with gimel_serve(tmp_path, "exact") as gimel:
        declare(gimel, experiment)
        visits = []
        for shopper in SHOPPERS:
            visitor = Visitor(
                browser, shop_page(site, gimel, experiment, shopper.covariate), "gimel", gimel
            )
            try:
                visitor.delivered()
                if not shopper.pages:  # an amount that is not a number is refused at once
                    for bad in ("12", float("nan"), float("inf"), 1e13):
                        error = visitor.page.evaluate(REFUSED, bad)
                        assert "the amount must be a number" in error, bad
                    assert "purchase" not in visitor.sent() and visitor.queue() == []
                totals = []
                total = 0.0
                for i, page in enumerate(shopper.pages):
                    if i:  # a later page, where the backend counts the orders since: the
                        # covariate sent stays the one read when the visitor joined
                        later = (shopper.covariate or 0.0) + i
                        visitor.page.goto(shop_page(site, gimel, experiment, later))
                    for amount in page:
                        buy(visitor, amount)
                        totals.append((amount, total))
                        total += amount
                    visitor.delivered()
                if shopper.signs_up:
                    visitor.page.evaluate("signup.complete()")
                    visitor.delivered()
                # Each purchase went out with its own uuid, its amount, the total before it
                # (uncapped: Gimel caps) and the covariate read when the visitor joined; the
                # same fields each time Alephbet sent it (it re-sends what is still queued).
                sent = dict.fromkeys(sent_values(visitor))
                assert len({uuid for uuid, *_ in sent}) == len(sent)
                assert [(float(v), float(t), number(c)) for _, v, t, c in sent] == [
                    (amount, before, shopper.covariate) for amount, before in totals
                ]
                assert {r.status for r in visitor.responses} == {200}
                visits.append((visitor.variant(), shopper))
            finally:
                visitor.close()
        check_sums(gimel, experiment, visits)


@pytest.mark.slow
def test_a_purchase_queued_while_the_store_is_down_counts_once_with_its_value_once(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    """Redis stops: a returning shopper's purchase and a newcomer's participation and purchase
    wait in Alephbet's queue, with their value, total and covariate. The next page view sends
    them again, same uuid, same fields; a stale copy sent once more adds nothing."""
    experiment = "value outage"
    regular = Shopper(4.0, [[10.0, 25.0, 5.0]])
    newcomer = Shopper(6.0, [[8.0]])
    with gimel_serve(tmp_path, "exact") as gimel:
        declare(gimel, experiment)
        first = Visitor(browser, shop_page(site, gimel, experiment, 4.0), "gimel", gimel)
        second = None
        try:
            first.delivered()
            buy(first, 10.0)
            first.delivered()
            with store_down(gimel):
                buy(first, 25.0)
                second = Visitor(browser, shop_page(site, gimel, experiment, 6.0), "gimel", gimel)
                buy(second, 8.0)  # sends the queued participation again, and the purchase
                first.wait_for_answers(3)
                second.wait_for_answers(3)
                assert first.responses[-1].status == 503
                check_refused(second, experiment, ["participate", "purchase"])
                (queued,) = first.queue()
                assert (queued["event"], queued["value"], queued["total"]) == ("purchase", 25, 10)
                assert queued["covariate"] == 4
                assert [item.get("covariate") for item in second.queue()] == [6, 6]
                resent = queued_pairs(first)

            resend_on_reload(first)
            resend_on_reload(second)
            # The purchase went out twice (refused, then counted), both times the same.
            purchase = [sent for sent in sent_values(first) if sent[1] == "25"]
            assert len(purchase) == 2 and len(set(purchase)) == 1
            assert purchase[0][2:] == ("10", "4")
            buy(first, 5.0)  # the total kept in the browser counts the re-sent purchase
            first.delivered()
            assert sent_values(first)[-1][1:] == ("5", "35", "4")
            # A stale copy of the queued purchase (another tab's queue, say) counts nothing.
            stale = {k: str(v) for k, v in queued.items() if k != "_quuid"}
            assert {(stale["event"], stale["uuid"])} == resent
            gimel.send([stale])
            visits = [(first.variant(), regular), (second.variant(), newcomer)]
        finally:
            first.close()
            if second is not None:
                second.close()
        check_sums(gimel, experiment, visits)
