"""The churn level of the period being scored: one shift of the calibrated log-odds, forecast from the labelled
snapshots and chosen on the backtest, never on the period it is applied to.

The calibration is fitted on past snapshots; the period after today may churn more or less than they did
(cohorts age, the season turns). Per labelled snapshot, the *offset* is the shift of the log-odds of the
cross-fitted calibrated probabilities that makes their mean the snapshot's churn rate (:func:`level_offset`).
A correction forecasts the offset at today from the snapshots' offsets (:func:`level_candidates`):

* ``none``: 0, the calibration's own level.
* ``newest``: the newest snapshot's offset, the level of the period that ended today.
* ``trend``: a straight line through the offsets over time (each snapshot weighted by its rows), read at
  today; with 3 snapshots or more.
* ``season``: the offset of the snapshots on today's date in earlier years
  (:func:`~churnguard.training.procedure.season_days`; their mean, weighted by rows): the level of the same
  period of the year as the model sees it; only when the snapshots reach back a year.

The backtest chooses one (:func:`choose_level`): the one with the lowest ECE on its scored day, ``none``
unless a correction lowers it. The deployed model applies the same correction, forecast from its own
snapshots, as the calibrator's ``shift``: every customer's log-odds move by the same amount, so their order
never changes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from churnguard.model._modelcore import logit
from churnguard.training.evaluation import expected_calibration_error

__all__ = ["LEVELS", "YEAR_DAYS", "choose_level", "level_candidates", "level_offset", "snapshot_offsets"]

LEVELS = ("none", "newest", "trend", "season")
YEAR_DAYS = 365.25


def level_offset(p: np.ndarray, y: np.ndarray) -> float:
    """The shift of the log-odds of ``p`` that makes their mean the churn rate of ``y`` (kept half a customer
    away from 0 and 1, so the shift is finite)."""
    from scipy.optimize import brentq

    n = len(y)
    rate = float(np.clip(np.mean(y), 0.5 / n, 1 - 0.5 / n))
    base = logit(p)
    return float(brentq(lambda s: np.mean(1.0 / (1.0 + np.exp(-(base + s)))) - rate, -30.0, 30.0, xtol=1e-10))


def snapshot_offsets(p: np.ndarray, y: np.ndarray, days: np.ndarray) -> pd.DataFrame:
    """Per snapshot day (oldest first): ``offset`` (:func:`level_offset` of its rows) and ``rows``."""
    frame = pd.DataFrame({"p": p, "y": y, "day": pd.to_datetime(days)})
    out = [(day, level_offset(g["p"].to_numpy(), g["y"].to_numpy()), len(g)) for day, g in frame.groupby("day")]
    return pd.DataFrame(out, columns=["day", "offset", "rows"]).set_index("day").sort_index()


def level_candidates(offsets: pd.DataFrame, today: pd.Timestamp,
                     season: tuple[pd.Timestamp, ...] = ()) -> dict[str, float]:
    """Each correction (see the module docstring) that the snapshots allow -> its shift at ``today``;
    ``season``: the snapshots on today's date in earlier years."""
    s, days = offsets["offset"].to_numpy(), offsets.index
    out = {"none": 0.0, "newest": float(s[-1])}
    if len(s) >= 3:
        t = (days - days[-1]).days.to_numpy() / YEAR_DAYS
        slope, intercept = np.polyfit(t, s, 1, w=np.sqrt(offsets["rows"].to_numpy()))
        out["trend"] = float(intercept + slope * (today - days[-1]).days / YEAR_DAYS)
    same = offsets.loc[offsets.index.isin(pd.DatetimeIndex(season))]
    if len(same):
        out["season"] = float(np.average(same["offset"], weights=same["rows"]))
    return out


def choose_level(y: np.ndarray, probabilities: Mapping[str, np.ndarray]) -> tuple[str, dict[str, float]]:
    """The correction whose probabilities (name -> the model's probabilities with its shift) have the lowest
    ECE on the outcomes ``y``, ``none`` unless one is strictly lower; and each one's ECE."""
    eces = {name: expected_calibration_error(y, p) for name, p in probabilities.items()}
    best = min(eces, key=lambda name: (eces[name], name != "none"))
    return best, eces
