"""BG/NBD learned from purchase histories: the parameters of the kernel's ``bg_`` features
(:func:`churnguard.features.kernel.bgnbd_features`). Histories are compressed to their distinct (x, t_x, T) rows,
in weeks, with a count each, so the counts of parts of a population (Dask partitions) fit like the whole."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from churnguard import btyd
from churnguard.features.kernel import WEEK_DAYS

__all__ = ["fit_bgnbd", "fit_history_counts", "history_counts"]


def history_counts(features: pd.DataFrame) -> pd.DataFrame:
    """Every customer with a purchase as (``x``, ``tx``, ``T``) in weeks, identical histories merged, with
    how many customers share each (``n``)."""
    has = features["bg_frequency"].notna()
    rows = pd.DataFrame({"x": features.loc[has, "bg_frequency"], "tx": features.loc[has, "bg_recency_days"] / WEEK_DAYS,
                         "T": features.loc[has, "bg_age_days"] / WEEK_DAYS})
    return rows.value_counts().reset_index(name="n")


def fit_history_counts(counts: Iterable[pd.DataFrame]) -> btyd.BGNBDParams:
    """BG/NBD on the :func:`history_counts` of the parts of a population (the fit merges identical rows, so
    the parts' order and split do not matter)."""
    rows = pd.concat(counts, ignore_index=True)
    return btyd.fit_bgnbd(rows["x"].to_numpy(), rows["tx"].to_numpy(), rows["T"].to_numpy(),
                          weights=rows["n"].to_numpy())


def fit_bgnbd(features: pd.DataFrame) -> btyd.BGNBDParams:
    """BG/NBD on every customer of ``features`` with a purchase."""
    return fit_history_counts([history_counts(features)])
