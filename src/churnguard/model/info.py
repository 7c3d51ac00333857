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

__all__ = ["ModelInfo"]


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

    @property
    def risk_bands(self) -> dict[str, float]:
        """Lower probability bound of each risk band (``config.model.risk_bands``)."""
        return dict(self.config.model.risk_bands)

    @property
    def horizon_days(self) -> int:
        """The churn horizon the model predicts over."""
        return self.population.horizon_days

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (the model file's ``info`` and MLflow's ``model_card.json``);
        :meth:`from_dict` round-trips."""
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
        )

