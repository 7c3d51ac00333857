"""Whether a newly trained model replaces the registry's champion: only a model that beats the baselines and
the champion on the same holdout, the customers of the new run's backtest day.

The champion is scored on that day as :func:`churnguard.training.run.run_evaluation` would score it:

* trained on or before the backtest day, its model file scores the day's customers (features built with its
  own config, its own scoring-time BG/NBD parameters): a forecast it made without seeing the outcome;
* trained after it, it has learned from outcomes inside the holdout, so its training procedure (its config) is
  run as of the backtest day on the same data (:func:`~churnguard.training.procedure.run_backtest`). When its
  procedure is this run's (same features, labels, snapshots and model settings) that backtest is this run's
  own, so the new model ties and is promoted: the same procedure, fresher data.

A champion that predicts another horizon answers another question and cannot be compared: the new model is
registered without the alias.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from churnguard.features.kernel import bgnbd_features
from churnguard.training.evaluation import scorecard
from churnguard.training.procedure import run_backtest

if TYPE_CHECKING:
    from churnguard.config import Config
    from churnguard.model.churn_model import ChurnModel
    from churnguard.training.procedure import Backtest, RowSource

__all__ = ["PROMOTION_METRIC", "Champion", "Promotion", "decide_promotion", "same_procedure", "score_champion"]

PROMOTION_METRIC = "roc_auc"


@dataclass(frozen=True)
class Champion:
    """The registry's current champion scored on the new run's backtest day.

    Attributes:
        version: its registry version.
        card: its scorecard on the backtest day's customers; None when it could not be scored there.
        how: how it was scored (or why it could not be), for people.
    """

    version: str
    card: dict[str, float] | None
    how: str


@dataclass(frozen=True)
class Promotion:
    """The decision on the registry alias: ``promote`` and the sentence that says why."""

    promote: bool
    reason: str
    champion: Champion | None = None


def same_procedure(a: Config, b: Config) -> bool:
    """Whether two configs run the same training procedure on the same rows (features, labels, snapshots,
    model settings; the data mapping, tracking and risk bands aside)."""
    def procedure(c: Config) -> tuple:
        return c.features, c.labels, c.snapshots, c.model.model_copy(update={"risk_bands": {}})

    return procedure(a) == procedure(b)


def score_champion(champion: ChurnModel, version: str, backtest: Backtest, config: Config,
                   rows_for: Callable[[Config], RowSource], first_day: pd.Timestamp) -> Champion:
    """``champion`` (registry ``version``) scored on ``backtest``'s day (see the module docstring).

    ``rows_for(c)`` gives a row source of config ``c`` (its rows and training settings) on this run's data;
    ``config`` is this run's.
    """
    info = champion.require_info()
    day, trained = backtest.as_of, pd.Timestamp(info.training_window["as_of"])
    horizon = info.population.horizon_days
    if horizon != config.labels.horizon_days:
        return Champion(version, None, f"it predicts churn within {horizon} days, this model within "
                                       f"{config.labels.horizon_days}: they cannot be compared")
    if trained <= day:
        frame = rows_for(info.config).whole(day)
        frame = frame.assign(**bgnbd_features(frame, info.population.bgnbd, horizon))
        card = scorecard(frame["churned"].to_numpy(), champion.predict_proba(frame))
        return Champion(version, card, f"its model file (trained as of {trained.date()}) scored on {day.date()}")
    how = (f"trained as of {trained.date()}, after {day.date()}: its training procedure run as of {day.date()}")
    if same_procedure(info.config, config):
        return Champion(version, backtest.scorecards["model"], how + " (the same procedure as this run's)")
    try:
        other = run_backtest(rows_for(info.config), first_day, day, info.config)
    except ValueError as exc:  # data too short for its procedure as of that day
        return Champion(version, None, f"{how} is not possible: {exc}")
    return Champion(version, other.scorecards["model"], how)


def decide_promotion(beats_baselines: bool, verdict: str, card: dict[str, float], champion: Champion | None,
                     alias: str) -> Promotion:
    """Promote (point ``alias`` at the new model) only when it beats the baselines and scores at least as well
    as the champion on the same day on :data:`PROMOTION_METRIC`; the reason either way."""
    m = PROMOTION_METRIC
    if not beats_baselines:
        return Promotion(False, f"not made {alias}: {verdict}", champion)
    if champion is None:
        return Promotion(True, f"made {alias}: it beats every baseline and there was no {alias} yet")
    if champion.card is None:
        return Promotion(False, f"not made {alias}: version {champion.version} ({alias}) could not be scored on "
                                f"the same day ({champion.how}); set the alias by hand if this model should "
                                "replace it", champion)
    mine, theirs = card[m], champion.card[m]
    versus = f"{m} {mine:.4f} vs {theirs:.4f} for version {champion.version}, {champion.how}"
    if mine >= theirs:
        return Promotion(True, f"made {alias}: it beats every baseline and scores at least as well as the "
                               f"{alias} on the same day ({versus})", champion)
    return Promotion(False, f"not made {alias}: the {alias} scores better on the same day ({versus})", champion)
