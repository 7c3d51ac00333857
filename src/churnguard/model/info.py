"""What a trained model knows besides its trees, as one typed, frozen object: :class:`ModelInfo`.

Training builds it once; the model file stores :meth:`ModelInfo.to_dict` and loading parses it back once
(:meth:`ModelInfo.from_dict`: the config validated, the population state built), so scoring, serving and
evaluation read attributes (``model.info.population.lifespan_years``), never string keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from churnguard.btyd import BGNBDParams
from churnguard.config import Config
from churnguard.model._modelcore import Calibrator
from churnguard.population import Population

__all__ = ["CurveCard", "ModelInfo"]


@dataclass(frozen=True)
class CurveCard:
    """The churn curve's card (:mod:`churnguard.training.curve`): per horizon, the backtest's scorecard and the
    calibration (the calibrator's fields, and the Brier score of its cross-fitted scores before and after it).

    Attributes:
        horizons: in days, increasing.
        backtest_as_of: the day the curve's backtest scored (today minus the longest horizon).
        validation_day: the snapshot the deployed curve's number of trees was chosen on.
        train_rows: the deployed curve's rows (snapshot rows times the horizons whose windows had ended).
        scorecards: horizon -> metric -> value on the backtest's customers.
        calibration: horizon -> the calibrator's fields, ``brier_raw`` and ``brier``.
    """

    horizons: tuple[int, ...]
    backtest_as_of: str
    validation_day: str
    train_rows: int
    scorecards: Mapping[int, Mapping[str, float]]
    calibration: Mapping[int, Mapping[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (horizons as text keys); :meth:`from_dict` round-trips."""
        return {"horizons": list(self.horizons), "backtest_as_of": self.backtest_as_of,
                "validation_day": self.validation_day, "train_rows": self.train_rows,
                "scorecards": {str(h): dict(c) for h, c in self.scorecards.items()},
                "calibration": {str(h): dict(c) for h, c in self.calibration.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CurveCard:
        """Parse :meth:`to_dict`'s output; a missing or bad field raises KeyError, TypeError or ValueError."""
        return cls(tuple(int(h) for h in data["horizons"]), str(data["backtest_as_of"]),
                   str(data["validation_day"]), int(data["train_rows"]),
                   {int(h): dict(c) for h, c in data["scorecards"].items()},
                   {int(h): dict(c) for h, c in data["calibration"].items()})


@dataclass(frozen=True)
class ModelInfo:
    """A trained model's configuration, population state, evaluation and provenance.

    Attributes:
        package_version: the churnguard version that trained the model.
        model_version: names the model in every score it writes: its training day and a digest of its data
            and config.
        config: the whole configuration the model was trained with.
        population: what training learned about the population, passed to the feature kernel.
        training_window: ``first_day`` and ``as_of`` of the training data (ISO dates).
        summary: the training run's summary (rows, snapshots, Brier scores, ...), for display.
        scorecards: scorer name (``model`` and the baselines) -> metric -> value on the test snapshot.
        verdict: one sentence on how the model compares with the baselines.
        evaluation: how ``scorecards`` were made: ``backtest`` (the training procedure run one horizon earlier
            and scored on the following period) or ``grouped_cv`` (cross-validation grouped by customer, for
            data that leaves no later period to test on).
        bgnbd_params_by_snapshot: the BG/NBD fit of each training snapshot (ISO date -> parameters).
        baseline_calibrators: baseline name -> its calibrator, fitted on the validation snapshot.
        data_fingerprint: a short hash of the validated training inputs.
        git_commit: the commit the training ran from, when known.
        feature_dtypes: model feature -> its dtype in the training set.
        drift_profiles: feature (and ``churn_probability``) -> reference profile for drift checks.
        curve: the churn curve's card; None for a model of one horizon.
    """

    package_version: str
    model_version: str
    config: Config
    population: Population
    training_window: Mapping[str, str]
    summary: Mapping[str, Any] = field(default_factory=dict)
    scorecards: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    verdict: str = ""
    evaluation: str = "backtest"
    bgnbd_params_by_snapshot: Mapping[str, BGNBDParams] = field(default_factory=dict)
    baseline_calibrators: Mapping[str, Calibrator] = field(default_factory=dict)
    data_fingerprint: str = ""
    git_commit: str | None = None
    feature_dtypes: Mapping[str, str] = field(default_factory=dict)
    drift_profiles: Mapping[str, Any] = field(default_factory=dict)
    curve: CurveCard | None = None

    @property
    def risk_bands(self) -> dict[str, float]:
        """Lower probability bound of each risk band (``config.model.risk_bands``)."""
        return dict(self.config.model.risk_bands)

    @property
    def support_days(self) -> int | None:
        """The longest silence (days since the last purchase) a customer the model learned from could have
        (``churnguard.training.run.support_facts``); None for a model trained before it was recorded."""
        days = self.summary.get("support_days")
        return None if days is None else int(days)

    @property
    def horizon_days(self) -> int:
        """The churn horizon the model predicts over."""
        return self.population.horizon_days

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (the model file's ``info`` and MLflow's ``model_card.json``; ``curve`` only
        for a model with one); :meth:`from_dict` round-trips."""
        curve = {} if self.curve is None else {"curve": self.curve.to_dict()}
        return {
            "package_version": self.package_version,
            "model_version": self.model_version,
            "config": self.config.model_dump(mode="json"),
            "population": self.population.to_dict(),
            "training_window": dict(self.training_window),
            "summary": dict(self.summary),
            "scorecards": {k: dict(v) for k, v in self.scorecards.items()},
            "verdict": self.verdict,
            "evaluation": self.evaluation,
            "bgnbd_params_by_snapshot": {k: v.to_dict() for k, v in self.bgnbd_params_by_snapshot.items()},
            "baseline_calibrators": {k: v.to_dict() for k, v in self.baseline_calibrators.items()},
            "data_fingerprint": self.data_fingerprint,
            "git_commit": self.git_commit,
            "feature_dtypes": dict(self.feature_dtypes),
            "drift_profiles": dict(self.drift_profiles),
            **curve,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        """Parse :meth:`to_dict`'s output: the config is validated and the typed parts are built here, once.

        Raises:
            KeyError, TypeError, ValueError (pydantic's ValidationError among them): a missing or bad field.
        """
        return cls(
            package_version=str(data["package_version"]),
            model_version=str(data["model_version"]),
            config=Config.model_validate(data["config"]),
            population=Population.from_dict(data["population"]),
            training_window={str(k): str(v) for k, v in data["training_window"].items()},
            summary=dict(data.get("summary", {})),
            scorecards={k: dict(v) for k, v in data.get("scorecards", {}).items()},
            verdict=str(data.get("verdict", "")),
            evaluation=str(data.get("evaluation", "backtest")),
            bgnbd_params_by_snapshot={k: BGNBDParams(**v) for k, v in data.get("bgnbd_params_by_snapshot", {}).items()},
            baseline_calibrators={k: Calibrator.from_dict(v)
                                  for k, v in data.get("baseline_calibrators", {}).items()},
            data_fingerprint=str(data.get("data_fingerprint", "")),
            git_commit=data.get("git_commit"),
            feature_dtypes={str(k): str(v) for k, v in data.get("feature_dtypes", {}).items()},
            drift_profiles=dict(data.get("drift_profiles", {})),
            curve=CurveCard.from_dict(data["curve"]) if "curve" in data else None,
        )

