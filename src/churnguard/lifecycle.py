"""Where a customer stands at ``as_of``, written once for scoring and the retention report.

* **Lifecycle stage**: from the days since a customer's last and first purchase
  (``k`` days ago at ``as_of`` is the day ``as_of - k``; ``active_days`` is the model's ``lookback_days`` when
  scoring, the report's activity window in the report):

  - ``new``: first purchase 0-89 days ago (and a purchase in the activity window);
  - ``active``: last purchase 0-89 days ago, not new;
  - ``at_risk``: last purchase 90-179 days ago;
  - ``lapsing``: last purchase 180 days ago up to the activity window;
  - ``lost``: a purchase, but none in the last ``active_days`` days;
  - ``never_bought``: no purchase at all.

  Windows are cut at ``active_days``, so with ``active_days <= 180`` some stages are empty.
* **The model's population**: the stages up to ``lapsing``, i.e. a purchase in the last ``lookback_days``
  days, the customers the model learned from (``churnguard.labels``). ``lost`` and ``never_bought``
  customers get no probability.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LIFECYCLE_STAGES", "STAGES", "in_lookback", "in_population", "lifecycle_codes", "lifecycle_stage"]

STAGES: tuple[str, ...] = ("new", "active", "at_risk", "lapsing", "lost")  # customers with a purchase
LIFECYCLE_STAGES: tuple[str, ...] = (*STAGES, "never_bought")
NEW_DAYS, AT_RISK_DAYS = 90, 180
_ACTIVE = STAGES.index("active")  # then at_risk, lapsing, lost
_NAMES = np.array(LIFECYCLE_STAGES, dtype=object)


def lifecycle_codes(days_since_last: np.ndarray, days_since_first: np.ndarray, active_days: int) -> np.ndarray:
    """Each customer's stage as an index into ``LIFECYCLE_STAGES`` (int8), from the days since their last and
    first purchase (NaN or infinite: no purchase) and the activity window ``active_days``."""
    last = np.asarray(days_since_last, dtype="float64")
    first = np.asarray(days_since_first, dtype="float64")
    # active below NEW_DAYS, at_risk below AT_RISK_DAYS, lapsing below active_days, each cut at active_days,
    # lost from there on; never_bought without a last purchase
    cuts = np.array([min(NEW_DAYS, active_days), min(AT_RISK_DAYS, active_days), active_days], dtype="float64")
    code = (np.searchsorted(cuts, last, side="right") + _ACTIVE).astype(np.int8)
    code[~(last < np.inf)] = len(STAGES)  # NaN or +inf (-inf, which no age is, counts as just now)
    code[(last < active_days) & (first < NEW_DAYS)] = STAGES.index("new")
    return code


def lifecycle_stage(days_since_last: np.ndarray, days_since_first: np.ndarray, active_days: int) -> np.ndarray:
    """Each customer's stage name (see :func:`lifecycle_codes`)."""
    return _NAMES[lifecycle_codes(days_since_last, days_since_first, active_days)]


def in_lookback(days_since_last: np.ndarray, lookback_days: int) -> np.ndarray:
    """Whether each customer bought in the last ``lookback_days`` days (``churnguard.labels``' population; NaN:
    never bought): the customers the model learns from, scores and compares for drift."""
    return np.asarray(days_since_last, dtype="float64") < lookback_days


def in_population(stage: np.ndarray) -> np.ndarray:
    """Whether each customer (by stage name) is one the model learned about: a purchase in the lookback."""
    stage = np.asarray(stage, dtype=object)
    return (stage != "lost") & (stage != "never_bought")
