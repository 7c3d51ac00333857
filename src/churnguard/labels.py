"""Churn labels: who stopped buying after ``as_of``.

The population at ``as_of`` is every customer with a purchase on a day in ``(as_of - lookback_days, as_of]``.
A customer is ``churned = 1`` when they make no purchase on any day in ``(as_of, as_of + horizon_days]``.
A purchase is a transaction with a positive amount; refunds neither keep a customer active nor count as a
return visit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard.features.build import to_day
from churnguard.features.kernel import day_numbers

if TYPE_CHECKING:
    from churnguard.features.build import _Encoded

__all__ = ["bought_within", "make_labels"]


def make_labels(
    transactions: pd.DataFrame,
    as_of: str | pd.Timestamp,
    horizon_days: int = 90,
    lookback_days: int = 365,
) -> pd.DataFrame:
    """Label the customers active in the lookback window by whether they buy again within the horizon.

    Args:
        transactions: validated transactions (contract columns).
        as_of: the cut-off day; the label window starts the day after.
        horizon_days: length of the label window in days.
        lookback_days: a customer is in the population if they bought in this many days up to ``as_of``.

    Returns:
        ``customer_id``, ``as_of``, ``churned`` (0/1), sorted by ``customer_id``.
    """
    as_of = to_day(as_of)
    codes, ids = pd.factorize(transactions["customer_id"], sort=True)
    day = day_numbers(transactions["timestamp"].to_numpy()) - day_numbers(np.datetime64(as_of))
    active, churned = label_arrays(codes, day, transactions["amount"].to_numpy() > 0, len(ids), horizon_days,
                                   lookback_days)
    return pd.DataFrame({"customer_id": np.asarray(ids)[active], "as_of": as_of,
                         "churned": churned[active].astype("int8")})


def label_arrays(customer: np.ndarray, day: np.ndarray, purchase: np.ndarray, n: int, horizon_days: int,
                 lookback_days: int) -> tuple[np.ndarray, np.ndarray]:
    """The rule itself, over transaction rows: each row's customer position (``0 .. n - 1``), its day relative to
    ``as_of`` (0 = ``as_of``) and whether it is a purchase. Returns, per customer, whether they are in the
    population and whether they churned."""
    if horizon_days <= 0 or lookback_days <= 0:
        raise ValueError("horizon_days and lookback_days must be positive")
    active = np.bincount(customer[purchase & (day > -lookback_days) & (day <= 0)], minlength=n) > 0
    returned = np.bincount(customer[purchase & (day > 0) & (day <= horizon_days)], minlength=n) > 0
    return active, active & ~returned


def _active_and_churned(enc: _Encoded, as_of: pd.Timestamp, horizon_days: int,
                        lookback_days: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`label_arrays` on encoded tables (``as_of`` a day), over ``enc.ids``."""
    day = enc.tx_day - day_numbers(np.datetime64(as_of))
    return label_arrays(enc.tx_id, day, enc.amount > 0, len(enc.ids), horizon_days, lookback_days)


def bought_within(transactions: pd.DataFrame, customer_id: pd.Series, day: pd.Series, horizon_days: int
                  ) -> np.ndarray:
    """Per (customer, day) pair: a purchase (a positive amount) on a day in ``(day, day + horizon_days]``, the
    window in which :func:`label_arrays` counts a customer as returned, here for a day of each pair's own (the
    campaign read-out's and the uplift model's outcome)."""
    buys = transactions.loc[transactions["amount"].to_numpy() > 0, ["customer_id", "timestamp"]]
    pairs = pd.DataFrame({"customer_id": customer_id.to_numpy(), "day": day.to_numpy()}).reset_index()
    m = pairs.merge(buys, on="customer_id")
    bought_day = m["timestamp"].dt.normalize()
    hit = (bought_day > m["day"]) & (bought_day <= m["day"] + pd.Timedelta(days=horizon_days))
    return pairs["index"].isin(m.loc[hit, "index"]).to_numpy()
