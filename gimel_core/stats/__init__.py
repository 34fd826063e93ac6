"""Statistics on aggregated unique counts, in the standard library only.

- :mod:`.proportions`: a rate's 95% Wilson interval; against the control, the relative
  uplift's interval, the two-sided p-value of the pooled two-proportion z-test, and Holm's
  adjustment across the variants of a goal.
- :mod:`.bayes`: the chance to beat the control (Beta(1, 1) priors).
- :mod:`.srm`: the sample-ratio-mismatch test of the participants' split;
  :mod:`.srm_sequential`: its always-valid form, safe to check every hour.
- :mod:`.sequential`: the always-valid (sequential) interval and p-value of the relative
  uplift, valid however often the results are looked at, and their running values over looks.
- :mod:`.means`: a mean per participant from per-arm sums (revenue per visitor), its uplift
  with Welch's and the always-valid test, and CUPED on a pre-experiment covariate
  (:mod:`.student`: Student's t for Welch's test).
- :mod:`.counting_error`: the error a HyperLogLog count carries, which every statistic adds
  to its variance, so intervals never look tighter than the counters allow.

Conventions: no NaN or infinity is ever returned (results become JSON); a statistic that
does not exist is ``None``: a rate of a variant without trials, an uplift against a zero
control rate, an SRM test of fewer than two variants. Successes above trials (independent
HLL counters, or goals without participation) are counted as trials: every rate is capped at 1.
"""

from .bayes import chance_to_beat
from .counting_error import HLL_RSE
from .proportions import CONFIDENCE, Z, holm, two_proportion_p, uplift_interval, wilson
from .sequential import Running, Sequential, running, sequential_uplift, step
from .srm import SRM_ALPHA, chi2_sf, expected_split, gamma_q, srm_p_value
from .srm_sequential import SRM_CONCENTRATION, sequential_srm_p_value

__all__ = [
    "CONFIDENCE",
    "HLL_RSE",
    "Running",
    "SRM_ALPHA",
    "SRM_CONCENTRATION",
    "Sequential",
    "Z",
    "chance_to_beat",
    "chi2_sf",
    "expected_split",
    "gamma_q",
    "holm",
    "running",
    "sequential_srm_p_value",
    "sequential_uplift",
    "srm_p_value",
    "step",
    "two_proportion_p",
    "uplift_interval",
    "wilson",
]
