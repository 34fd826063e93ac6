"""The always-valid SRM test: checked against the paper's reference implementation, an
independent computation with scipy, and its promise (valid at every look) simulated."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

import pytest
from scipy import special

from gimel_core import stats
from gimel_core.stats.srm_sequential import SRM_CONCENTRATION, sequential_srm_p_value

# Lindon and Malek's own implementation, ssrm-test 0.1.5 (Optimizely, on PyPI):
# ssrm_test.sequential_p_values(rows, null_probabilities, dirichlet_concentration=c), one
# p-value per row of new participants, the running minimum of 1 / BF.
REFERENCE = [
    (
        [[500, 520], [480, 530], [510, 560], [495, 590]],
        [0.5, 0.5],
        100,
        [1.0, 1.0, 0.5969382394770341, 0.029716666889344854],
    ),
    (
        [[500, 520], [480, 530], [510, 560], [495, 590]],
        [0.5, 0.5],
        10_000,
        [1.0, 0.8947041577271609, 0.6605724428263686, 0.2334629437009067],
    ),
    (
        [[900, 1100], [880, 1120], [950, 1050]],
        [0.5, 0.5],
        100,
        [0.0003294208415565493, 3.400757461772704e-10, 3.1482826457378936e-10],
    ),
    (
        [[900, 1100], [880, 1120], [950, 1050]],
        [0.5, 0.5],
        10_000,
        [0.20685901461724054, 0.001173604709345078, 0.00013917346825263776],
    ),
    (
        [[40, 60], [45, 55], [50, 50], [52, 48]],
        [0.5, 0.5],
        100,
        [0.5174244172945727, 0.38420705184541465, 0.38420705184541465, 0.38420705184541465],
    ),
    (
        [[210, 340, 480], [190, 310, 520], [230, 300, 470]],
        [0.2, 0.3, 0.5],
        100,
        [0.936148378312532, 0.936148378312532, 0.936148378312532],
    ),
    (
        [[20, 17, 9], [18, 21, 8], [4, 6, 4], [18, 19, 11]],
        [0.4, 0.4, 0.2],
        100,
        [1.0, 1.0, 1.0, 1.0],
    ),
]


def looks(rows: Sequence[Sequence[int]], weights: Sequence[float], c: float) -> list[float]:
    """The p-value at each look, each look's new participants added to the counts."""
    counts = [0] * len(weights)
    p = 1.0
    out = []
    for row in rows:
        counts = [a + b for a, b in zip(counts, row, strict=True)]
        found = sequential_srm_p_value(counts, weights, p, c)
        assert found is not None
        p = found
        out.append(p)
    return out


@pytest.mark.parametrize(("rows", "weights", "c", "expected"), REFERENCE)
def test_matches_the_reference_implementation(
    rows: list[list[int]], weights: list[float], c: float, expected: list[float]
) -> None:
    assert looks(rows, weights, c) == pytest.approx(expected, rel=1e-9)


def scipy_log_bf(counts: Sequence[int], weights: Sequence[float], c: float) -> float:
    """The paper's Bayes factor written again: the Dirichlet-multinomial marginal likelihood
    of the counts over the multinomial's, both without the multinomial coefficient."""
    w = [x / sum(weights) for x in weights]
    n = sum(counts)
    if len(counts) == 2:  # a Beta-binomial: the multivariate beta is scipy's beta function
        (a, b), (wa, wb) = counts, w
        marginal = special.betaln(c * wa + a, c * wb + b) - special.betaln(c * wa, c * wb)
    else:
        marginal = special.gammaln(c) - special.gammaln(c + n)
        marginal += sum(
            special.gammaln(c * wi + x) - special.gammaln(c * wi)
            for x, wi in zip(counts, w, strict=True)
        )
    null = sum(special.xlogy(x, wi) for x, wi in zip(counts, w, strict=True))
    return float(marginal - null)


CASES = [
    ([130, 70], [1, 1]),
    ([1_000, 1_100], [1, 1]),
    ([9_800, 10_200], [1, 1]),
    ([498_000, 502_000], [1, 1]),
    ([5_100, 4_900], [0.5, 0.5]),
    ([240, 760], [0.3, 0.7]),
    ([33, 30, 37], [1, 1, 1]),
    ([3_000, 2_000, 5_400], [3, 2, 5]),
    ([120_000, 80_700, 199_300], [0.3, 0.2, 0.5]),
    ([400, 450, 500, 650], [1, 1, 1, 1]),
]


@pytest.mark.parametrize("c", [1.0, SRM_CONCENTRATION, 10_000.0])
@pytest.mark.parametrize(("counts", "weights"), CASES)
def test_matches_scipy(counts: list[int], weights: list[float], c: float) -> None:
    log_bf = scipy_log_bf(counts, weights, c)
    expected = min(1.0, math.exp(-log_bf))
    # Both sides subtract log-gammas of about m log m (m = n + c): their rounding.
    m = sum(counts) + c
    rel = 1e-15 * m * math.log(m)
    assert sequential_srm_p_value(counts, weights, 1.0, c) == pytest.approx(expected, rel=rel)


def test_the_cases_cover_both_answers() -> None:
    """The cases above reach both a p of 1 and a tiny one, so neither branch goes untested."""
    found = [sequential_srm_p_value(counts, weights) for counts, weights in CASES]
    assert 1.0 in found and min(p for p in found if p is not None) < 1e-6


def test_the_running_minimum_is_kept() -> None:
    # A 60/40 start, then the split comes back to 50/50: the p-value stays where it was.
    low = sequential_srm_p_value([300, 200])
    assert low is not None and low < 0.05
    balanced = sequential_srm_p_value([5_000, 5_000])
    assert balanced == 1.0
    assert sequential_srm_p_value([5_000, 5_000], previous=low) == low
    assert sequential_srm_p_value([300, 200], previous=0.5) == low
    assert sequential_srm_p_value([300, 200], previous=low / 2) == low / 2


def test_weights_are_normalised_and_default_to_equal() -> None:
    p = sequential_srm_p_value([240, 760], [0.3, 0.7])
    assert sequential_srm_p_value([240, 760], [3, 7]) == p
    assert sequential_srm_p_value([520, 480]) == sequential_srm_p_value([520, 480], [2, 2])
    assert p is not None and p < 0.01  # 24% against 30% of 1,000


def test_a_variant_weighted_zero() -> None:
    # Nobody there: left out of the test; somebody there: a mismatch for certain.
    assert sequential_srm_p_value([500, 500, 0], [1, 1, 0]) == 1.0
    assert sequential_srm_p_value([500, 500, 1], [1, 1, 0]) == 0.0


@pytest.mark.parametrize(
    ("counts", "weights"),
    [([], None), ([10], None), ([0, 0], None), ([0, 0, 0], [1, 1, 1]), ([10, 0], [1, 0])],
)
def test_none_where_no_test_exists(counts: list[int], weights: list[float] | None) -> None:
    assert sequential_srm_p_value(counts, weights, previous=0.3) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([10, -1],), "counts must be integers >= 0, not -1"),
        (([10, 1.5],), "counts must be integers >= 0, not 1.5"),
        (([10, "3"],), "counts must be integers >= 0, not '3'"),
        (([10, 10], [1.0]), "one weight per count: 2 counts, 1 weights"),
        (([10, 10], [1.0, -1.0]), "weights must be finite numbers >= 0, not -1.0"),
        (([10, 10], [1.0, math.nan]), "weights must be finite numbers >= 0, not nan"),
        (([10, 10], [1.0, math.inf]), "weights must be finite numbers >= 0, not inf"),
        (([10, 10], [1.0, "1"]), "weights must be finite numbers >= 0, not '1'"),
        (([10, 10], None, 1.5), "previous must be a p-value in [0, 1], not 1.5"),
        (([10, 10], None, math.nan), "previous must be a p-value in [0, 1], not nan"),
        (([10, 10], None, 1.0, 0.0), "concentration must be a finite number > 0, not 0.0"),
        (([10, 10], None, 1.0, math.inf), "concentration must be a finite number > 0, not inf"),
        # bad input after a variant weighted zero is still refused
        (([1, 10, -1], [0, 1, 1]), "counts must be integers >= 0, not -1"),
    ],
)
def test_bad_input_is_refused(args: tuple, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        sequential_srm_p_value(*args)
    assert str(raised.value) == message


def test_exported_beside_the_fixed_test() -> None:
    assert stats.sequential_srm_p_value is sequential_srm_p_value
    assert stats.SRM_CONCENTRATION == SRM_CONCENTRATION


def test_valid_at_every_look_where_the_fixed_test_is_not() -> None:
    """A/A, looked at after every participant (the most looks there can be): the chance of
    ever p < 5% stays under 5%, while the fixed chi-square's, peeked the same way, does not."""
    rng = random.Random(23)
    alpha, streams, length = 0.05, 600, 400
    sequential = fixed = 0
    for _ in range(streams):
        counts = [0, 0]
        p = 1.0
        ever_sequential = ever_fixed = False
        for _ in range(length):
            counts[rng.random() < 0.5] += 1
            p = sequential_srm_p_value(counts, None, p) or p
            ever_sequential = ever_sequential or p < alpha
            fixed_p = stats.srm_p_value(counts)
            ever_fixed = ever_fixed or (fixed_p is not None and fixed_p < alpha)
        sequential += ever_sequential
        fixed += ever_fixed
    # The bound is alpha; 4 standard errors of slack above it.
    assert sequential / streams <= alpha + 4 * math.sqrt(alpha * (1 - alpha) / streams)
    # Peeking at the fixed test 400 times crosses 5% in over a third of A/A runs.
    assert fixed / streams > 0.3


def test_finds_a_mismatch_as_counts_grow() -> None:
    """A 45/55 split: the p-value falls below the alert level, and the test martingale grows
    with the evidence (each look's p at most the last)."""
    p = 1.0
    history = []
    for n in itertools.accumulate([400] * 10):
        found = sequential_srm_p_value([round(0.45 * n), n - round(0.45 * n)], previous=p)
        assert found is not None
        p = found
        history.append(p)
    assert history == sorted(history, reverse=True)
    assert history[-1] < stats.SRM_ALPHA < history[0]
