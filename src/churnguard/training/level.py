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

* ``intensity``: the purchase intensity of today's outcome window, forecast by the same calendar window one
  year earlier, relative to that of the outcome window whose level the calibration ties to today: the
  snapshot nearest today's date in an earlier year, or with less than a year of snapshots the newest one
  (:func:`intensity_power`). Under a Poisson view ``P(no purchase) = exp(-rate * h)``, so a probability
  learned at intensity ``s_ref`` is ``p ** (s_today / s_ref)`` at ``s_today``; applied as the calibrator's
  ``power``. The intensity of a window is the mean ``mu`` of a zero-truncated Poisson fitted to the number of
  purchase days of each customer who bought in it (:meth:`PurchaseDays.intensity`): it needs no count of the
  customers who could have bought, so windows at the very start of the data are measured as well as later
  ones. The two windows are compared on the customers who bought in both
  (:meth:`PurchaseDays.paired_intensities`), so the ratio is the change in intensity, not in who the
  customers are. Only when the window a year earlier lies in the data; it is 1 (no change) when the reference
  snapshot is that window's own day (a history of a year and more).

The backtest chooses one (:func:`choose_level`): the one with the lowest ECE on its scored day, ``none``
unless a correction lowers it. When the backtest's own window a year earlier is before the data (12 months of
history), its ``intensity`` is read from its outcome window as measured (known by the deployed run's today):
that checks the map and the reference, not the forecast a year back. The deployed model applies the chosen
correction, forecast from its own snapshots, as the calibrator's ``shift`` (every customer's log-odds move by
the same amount) or ``power``: either way their order never changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from churnguard.features.kernel import day_numbers
from churnguard.model._modelcore import Calibrator, logit
from churnguard.training.evaluation import expected_calibration_error

__all__ = ["LEVELS", "MIN_PAIRED", "YEAR_DAYS", "Intensity", "PurchaseDays", "apply_level", "choose_level", "intensity_power",
           "level_candidates", "level_offset", "reference_day", "snapshot_offsets"]

LEVELS = ("none", "newest", "trend", "season", "intensity")
MIN_PAIRED = 30  # customers who bought in both windows, below which their intensities are not compared
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


def apply_level(calibrator: Calibrator, name: str, shifts: Mapping[str, float],
                intensity: Intensity | None) -> Calibrator:
    """``calibrator`` with the correction ``name``: its shift of ``shifts``, or for ``intensity`` the power of
    ``intensity``; none (shift 0, power 1) when the data does not allow it."""
    if name == "intensity":
        return replace(calibrator, shift=0.0, power=intensity.power if intensity is not None else 1.0)
    return replace(calibrator, shift=shifts.get(name, 0.0), power=1.0)


def choose_level(y: np.ndarray, probabilities: Mapping[str, np.ndarray]) -> tuple[str, dict[str, float]]:
    """The correction whose probabilities (name -> the model's probabilities with its shift) have the lowest
    ECE on the outcomes ``y``, ``none`` unless one is strictly lower; and each one's ECE."""
    eces = {name: expected_calibration_error(y, p) for name, p in probabilities.items()}
    best = min(eces, key=lambda name: (eces[name], name != "none"))
    return best, eces


def _day_number(day: pd.Timestamp) -> int:
    """The kernel's day number of ``day`` (days since 1970-01-01)."""
    return int(day_numbers(np.datetime64(day)))


@dataclass(frozen=True)
class PurchaseDays:
    """The days on which each customer bought: distinct (``customer``, ``day``) pairs, ``day`` in days since
    1970-01-01, of the purchases (positive amounts) up to ``last`` only."""

    customer: np.ndarray
    day: np.ndarray
    last: pd.Timestamp

    @classmethod
    def of(cls, customer: np.ndarray, day: np.ndarray, last: pd.Timestamp) -> PurchaseDays:
        """The distinct pairs of purchase rows (``customer`` codes, ``day`` numbers) up to ``last``."""
        keep = day <= _day_number(last)
        pairs = np.unique(np.stack([np.asarray(customer, dtype="int64")[keep],
                                    np.asarray(day, dtype="int64")[keep]]), axis=1)
        return cls(pairs[0], pairs[1], last)

    def buyers(self, start: pd.Timestamp, days: int) -> tuple[np.ndarray, np.ndarray]:
        """The customers who bought in the window ``(start, start + days]`` and their numbers of purchase days
        there (customers in increasing order)."""
        lo = _day_number(start)
        inside = (self.day > lo) & (self.day <= lo + days)
        return np.unique(self.customer[inside], return_counts=True)

    def intensity(self, start: pd.Timestamp, days: int, among: np.ndarray | None = None) -> float:
        """The purchase intensity of the window ``(start, start + days]``: the mean ``mu`` of purchase days per
        customer that a zero-truncated Poisson gives for their mean among the customers who bought in it
        (``mu / (1 - exp(-mu))``), only those of ``among`` when given; nan when none bought twice there or
        the window ends after ``last``."""
        from scipy.optimize import brentq

        if start + pd.Timedelta(days=days) > self.last:
            return float("nan")
        customers, counts = self.buyers(start, days)
        if among is not None:
            counts = counts[np.isin(customers, among)]
        mean = counts.mean() if len(counts) else 1.0
        if mean <= 1.0:
            return float("nan")
        return float(brentq(lambda mu: mu / -np.expm1(-mu) - mean, 1e-9, 1e4, xtol=1e-12))

    def paired_intensities(self, first: pd.Timestamp, second: pd.Timestamp, days: int) -> tuple[float, float]:
        """:meth:`intensity` of the windows of ``days`` after ``first`` and after ``second``, each among the
        customers who bought in both: the same customers, so their ratio is the change in intensity between
        the two periods, not in who the customers are (a shop a year older holds more regular buyers)."""
        both = np.intersect1d(self.buyers(first, days)[0], self.buyers(second, days)[0])
        if len(both) < MIN_PAIRED:
            return float("nan"), float("nan")
        return self.intensity(first, days, both), self.intensity(second, days, both)


@dataclass(frozen=True)
class Intensity:
    """The ``intensity`` correction at ``today``: ``power`` = ``today_rate / reference_rate``, the intensity
    (:meth:`PurchaseDays.paired_intensities`) of the outcome window of ``window_start`` (today's a year
    earlier, or the scored day's own when it is ``measured``) over that of the ``reference`` snapshot's, on
    the customers who bought in both."""

    power: float
    window_start: pd.Timestamp
    today_rate: float
    reference: pd.Timestamp
    reference_rate: float
    measured: bool = False

    def facts(self) -> dict[str, object]:
        """For the summary and the model card."""
        return {"power": self.power, "window_start": str(self.window_start.date()), "window_rate": self.today_rate,
                "reference_snapshot": str(self.reference.date()), "reference_rate": self.reference_rate,
                "measured": self.measured}


def reference_day(today: pd.Timestamp, days: tuple[pd.Timestamp, ...]) -> pd.Timestamp:
    """The day of ``days`` nearest ``today``'s date in an earlier year (the newer of two as near)."""
    def distance(day: pd.Timestamp) -> int:
        years = max(round((today - day).days / YEAR_DAYS), 1)
        return min(abs((today - pd.DateOffset(years=k) - day).days) for k in {max(years - 1, 1), years, years + 1})

    return min(days, key=lambda d: (distance(d), -d.value))


def intensity_power(purchases: PurchaseDays, today: pd.Timestamp, horizon: int, days: tuple[pd.Timestamp, ...],
                    first_day: pd.Timestamp, measured: bool = False) -> Intensity | None:
    """The ``intensity`` correction at ``today`` relative to the snapshot of ``days`` nearest today's date in
    an earlier year (:func:`reference_day`; see the module docstring). None when the window a year before
    today's outcome window (with ``measured``, the outcome window itself, which ``purchases`` must then hold)
    starts before ``first_day`` or ends after ``purchases.last``, or the intensities cannot be compared."""
    start = today if measured else today - pd.DateOffset(years=1)
    if start < first_day.normalize() - pd.Timedelta(days=1) or start + pd.Timedelta(days=horizon) > purchases.last:
        return None
    reference = reference_day(today, days)
    window, ref = purchases.paired_intensities(start, reference, horizon)
    if not (np.isfinite(window) and np.isfinite(ref)):
        return None
    power = 1.0 if reference == start else window / ref
    return Intensity(power, start, window, reference, ref, measured)
