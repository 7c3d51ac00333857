"""The churn model: LightGBM with early stopping plus a probability calibrator, and its model file.

``ChurnModel`` follows scikit-learn's contract: ``__init__`` only stores settings, learned state ends in
``_``, ``fit`` returns ``self``, and using an unfitted model raises :class:`NotFittedError`.

Model file (format 2): a zip archive of data only, so loading it never runs code from it:

* ``manifest.json``: the format version, the package version and each other member's size and SHA-256;
* ``model.json``: feature names, categories, best iteration, settings, the calibrator
  (:meth:`~churnguard.model._modelcore.Calibrator.to_dict`) and the
  :class:`~churnguard.model.info.ModelInfo` (``info``); for a model with one, who the purchases' seasonal
  model scores instead (``beyond_support``: :class:`~churnguard.model._modelcore.BeyondSupport`);
* ``booster.txt``: LightGBM's own text model, up to the best iteration;
* ``curve_booster.txt`` (only for a model trained with several horizons): the churn curve's LightGBM text
  model; ``model.json``'s ``curve`` holds its inputs, horizons and calibrators
  (:class:`~churnguard.model._modelcore.Curve`).

Files of the earlier pickle-based format (format 1) are refused with a pointer to ``churnguard convert-model``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard import __version__
from churnguard._io.files import atomic_write_bytes
from churnguard.model._modelcore import (
    BOOSTER_TXT,
    CURVE_TXT,
    MODEL_JSON,
    StandaloneModel,
    category_codes,
    feature_matrix,
    numbers,
)
from churnguard.model.calibration import fit_calibrator

if TYPE_CHECKING:
    from churnguard.model.info import ModelInfo

__all__ = ["FORMAT_VERSION", "ChurnModel", "ModelFileError", "NotFittedError", "feature_columns"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
_OLD_MAGIC = b"CHURNGUARD-MODEL\n"  # the first bytes of a format 1 (pickle-based) model file
_MANIFEST = "manifest.json"
_SETTINGS = ("params", "num_boost_round", "early_stopping_rounds", "calibration", "seed", "monotone_constraints")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same model gives the same bytes
NON_FEATURES = ("customer_id", "as_of", "churned", "value_tier")


class NotFittedError(RuntimeError):
    """The model was used before ``fit`` (or ``load``)."""


class ModelFileError(ValueError):
    """A model file is missing, truncated, corrupted, tampered with, or from an incompatible version."""


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Model inputs: every numeric or categorical column that is not an id, date, label or display field."""
    return [
        c
        for c in frame.columns
        if c not in NON_FEATURES
        and (pd.api.types.is_numeric_dtype(frame[c]) or isinstance(frame[c].dtype, pd.CategoricalDtype))
        and not pd.api.types.is_bool_dtype(frame[c])
    ]


@dataclass
class ChurnModel:
    """Calibrated LightGBM churn classifier.

    Args:
        params: LightGBM parameters (``config.model.params``).
        num_boost_round: the most boosting rounds.
        early_stopping_rounds: stop when validation log loss has not improved for this many rounds.
        calibration: ``isotonic`` or ``sigmoid``, fitted on the validation set.
        seed: random seed for LightGBM's bagging and feature sampling.
        monotone_constraints: feature name -> 1 (risk may only rise with it) or -1, all else equal.
        info: what training learned besides the trees (config, population state, scorecards, ...), set by
            :func:`churnguard.training.run.run_training`; None for a model fitted on its own.

    Learned state besides the trees: ``curve_``, the churn curve over several horizons
    (:class:`~churnguard.model._modelcore.Curve`), or None (the class default) for a model of one horizon;
    ``beyond_``, who the purchases' seasonal model scores instead of the trees
    (:class:`~churnguard.model._modelcore.BeyondSupport`), or None (the class default).
    """

    params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 500
    early_stopping_rounds: int = 30
    calibration: str = "isotonic"
    seed: int = 42
    monotone_constraints: dict[str, int] = field(default_factory=dict)
    info: ModelInfo | None = None
    curve_ = None  # not fields: learned state, set by training or load
    beyond_ = None

    def fit(self, x_train: pd.DataFrame, y_train, x_valid: pd.DataFrame, y_valid) -> ChurnModel:
        """Train on ``x_train``, early-stop and calibrate on ``x_valid`` (a later snapshot).

        Each set goes to LightGBM as one float64 matrix (:meth:`_matrix`: the values LightGBM would take from
        :meth:`prepare`'s DataFrame, so the same model), freed once LightGBM has binned it.
        """
        import lightgbm as lgb

        self.feature_names_ = feature_columns(x_train)
        self.categories_ = {
            c: list(x_train[c].cat.categories) for c in self.feature_names_ if isinstance(x_train[c].dtype, pd.CategoricalDtype)
        }
        params = self.lightgbm_params(self.feature_names_)
        categorical = [i for i, c in enumerate(self.feature_names_) if c in self.categories_]

        def dataset(frame: pd.DataFrame, y, reference=None):
            ds = lgb.Dataset(self._matrix(frame), label=np.asarray(y, dtype="float32"), reference=reference,
                             feature_name=self.feature_names_, categorical_feature=categorical, params=params,
                             free_raw_data=True)
            return ds.construct()

        train = dataset(x_train, y_train)
        # As when LightGBM is given the DataFrame: the booster keeps the categories it maps to codes at predict.
        train.pandas_categorical = [self.categories_[self.feature_names_[i]] for i in categorical]
        valid = dataset(x_valid, y_valid, reference=train)
        self.evals_result_: dict[str, dict[str, list[float]]] = {}
        self.booster_ = lgb.train(
            params,
            train,
            num_boost_round=self.num_boost_round,
            valid_sets=[train, valid],
            valid_names=["train", "valid"],
            callbacks=[
                lgb.early_stopping(self.early_stopping_rounds, verbose=False),
                lgb.record_evaluation(self.evals_result_),
            ],
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        self.calibrator_ = fit_calibrator(self.calibration, self.predict_raw(x_valid), np.asarray(y_valid))
        return self

    def lightgbm_params(self, feature_names: list[str]) -> dict[str, Any]:
        """LightGBM's parameters for these settings and model inputs."""
        params = {"objective": "binary", "metric": "binary_logloss", "verbose": -1, **self.params, "seed": self.seed}
        if self.monotone_constraints:
            params["monotone_constraints"] = [self.monotone_constraints.get(c, 0) for c in feature_names]
        return params

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        """:meth:`prepare`'s values as the float64 matrix LightGBM takes (:func:`feature_matrix`)."""
        return feature_matrix(features, self.feature_names_, self.categories_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise NotFittedError("this ChurnModel is not fitted yet: call fit() or ChurnModel.load(path)")

    def require_info(self) -> ModelInfo:
        """:attr:`info`, which scoring needs (config, population state, risk bands).

        Raises:
            NotFittedError: the model was fitted on its own rather than by a training run (or not at all).
        """
        if self.info is None:
            raise NotFittedError("this ChurnModel has no training info (config, population state): train it with "
                                 "churnguard.training.run.run_training or 'churnguard train'")
        return self.info

    def prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        """The model's input columns in training order and types; missing columns become NaN (logged)."""
        names = self.feature_names_
        missing = [c for c in names if c not in features.columns]
        if missing:
            logger.info("%d model feature(s) missing from the input, treated as unknown: %s", len(missing), missing[:5])
        x = features.reindex(columns=names)
        for c in names:
            if c in self.categories_:  # unseen levels are unknown, like missing ones
                x[c] = pd.Categorical.from_codes(category_codes(x[c], self.categories_[c]), self.categories_[c])
            else:
                x[c] = numbers(x[c])
        return x

    def predict_raw(self, features: pd.DataFrame) -> np.ndarray:
        """Uncalibrated LightGBM probability."""
        self._check_fitted()
        return self.booster_.predict(self.prepare(features), num_iteration=self.best_iteration_)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of churn within the horizon, one value per row; customers beyond the
        support (``beyond_``) get the purchases' model's, as of the features' ``as_of``."""
        self._check_fitted()
        proba = self.calibrator_.probability(self.predict_raw(features))
        return proba if self.beyond_ is None else self.beyond_.apply(proba, features)

    def predict_curve(self, features: pd.DataFrame) -> pd.DataFrame:
        """Calibrated probability of churn within each horizon of the curve (``churn_probability_<h>d``
        columns, never rising with the horizon); no columns for a model without a curve."""
        self._check_fitted()
        if self.curve_ is None:
            return pd.DataFrame(index=features.index)
        curve = self.curve_.predict(features)
        if self.beyond_ is not None:
            curve[:] = self.beyond_.apply_curve(curve.to_numpy(), features, self.curve_.horizons)
        return curve

    def proba_from_raw_score(self, raw: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` from LightGBM's raw scores (log-odds): its sigmoid, as LightGBM computes it,
        then the calibration."""
        from churnguard.model.explain import lightgbm_probability, sigmoid_scale

        self._check_fitted()
        scale = sigmoid_scale(self.booster_)
        return self.calibrator_.probability(lightgbm_probability(np.asarray(raw, dtype="float64"), scale))

    def explain(self, matrix: np.ndarray, *, contributions: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        """TreeSHAP contributions (None unless asked for) and calibrated probabilities of the model inputs
        ``matrix``, for any number of rows: :func:`churnguard.model.explain.explain`."""
        from churnguard.model.explain import explain

        self._check_fitted()
        return explain(self, matrix, contributions=contributions)

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        """LightGBM's exact TreeSHAP contributions on the raw (log-odds) scale, one column per feature."""
        self._check_fitted()
        contrib = self.booster_.predict(self.prepare(features), num_iteration=self.best_iteration_, pred_contrib=True)
        return pd.DataFrame(contrib[:, :-1], columns=self.feature_names_, index=features.index)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, largest first."""
        self._check_fitted()
        gain = self.booster_.feature_importance(importance_type="gain", iteration=self.best_iteration_)
        return pd.Series(gain, index=self.feature_names_).sort_values(ascending=False)

    # -- the model file ---------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the model file (see the module docstring) atomically; the same model gives the same bytes."""
        self._check_fitted()
        document = {
            "feature_names": list(self.feature_names_),
            "categories": {c: list(v) for c, v in self.categories_.items()},
            "best_iteration": int(self.best_iteration_),
            "settings": {k: getattr(self, k) for k in _SETTINGS},
            "calibrator": self.calibrator_.to_dict(),
            "info": None if self.info is None else self.info.to_dict(),
        }
        if self.curve_ is not None:
            document["curve"] = self.curve_.to_dict()
        if self.beyond_ is not None:
            document["beyond_support"] = self.beyond_.to_dict()
        members = {  # NaN (an undefined metric, say) is written as JSON's common NaN extension, read back as NaN
            MODEL_JSON: json.dumps(document, indent=1).encode(),
            BOOSTER_TXT: self.booster_.model_to_string(num_iteration=self.best_iteration_).encode(),
        }
        if self.curve_ is not None:
            members[CURVE_TXT] = self.curve_.booster.model_to_string().encode()
        manifest = {
            "format": FORMAT_VERSION,
            "package_version": __version__,
            "members": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                        for name, data in members.items()},
        }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in {_MANIFEST: json.dumps(manifest, indent=1).encode(), **members}.items():
                zf.writestr(zipfile.ZipInfo(name, date_time=_ZIP_TIME), data, compress_type=zipfile.ZIP_DEFLATED)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> ChurnModel:
        """Load a model file after checking its format and each member's size and SHA-256; only JSON and
        LightGBM's text model are parsed (:meth:`StandaloneModel.from_members`), nothing is unpickled.

        Raises:
            ModelFileError: the file is missing, not a churnguard model, in the old pickle-based format, from
                an incompatible format, truncated or corrupted.
        """
        import lightgbm as lgb

        from churnguard.model.info import ModelInfo

        members = _read_members(Path(path))
        try:
            core = StandaloneModel.from_members(members[MODEL_JSON], members[BOOSTER_TXT], members.get(CURVE_TXT))
            settings, info = core.document["settings"], core.document["info"]
            info = None if info is None else ModelInfo.from_dict(info)
            model = cls(**{k: settings[k] for k in _SETTINGS}, info=info)
        except (KeyError, TypeError, ValueError, AttributeError, lgb.basic.LightGBMError) as exc:
            raise ModelFileError(f"{path}: the model file's contents are not a valid churnguard model "
                                 f"({type(exc).__name__}: {exc}); retrain the model") from None
        model.booster_, model.feature_names_, model.categories_ = core.booster, core.feature_names, core.categories
        model.calibrator_, model.best_iteration_, model.curve_ = core.calibrator, core.best_iteration, core.curve
        model.beyond_ = core.beyond
        return model


def _read_members(path: Path) -> dict[str, bytes]:
    """The members listed in the manifest, each checked against its recorded size and SHA-256."""
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    with path.open("rb") as fh:
        head = fh.read(len(_OLD_MAGIC))
    if head.startswith(_OLD_MAGIC):
        raise ModelFileError(
            f"{path}: this is a model file in the old pickle-based format (format 1), which churnguard "
            f"{__version__} no longer loads because unpickling a file can run code from it. Retrain with "
            "'churnguard train', or convert it once, on a machine that holds the key it was signed with "
            "(CHURNGUARD_MODEL_KEY or the key file): churnguard convert-model OLD.joblib NEW.zip"
        )
    if not head.startswith(b"PK\x03\x04"):
        raise ModelFileError(f"{path}: not a churnguard model file (it is not a zip archive)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise ModelFileError(f"{path}: the model file is truncated (the end of its zip archive is missing; "
                             f"{path.stat().st_size:,} bytes); copy it again or retrain") from None
    try:
        with archive as zf:
            names = set(zf.namelist())
            if _MANIFEST not in names and "uplift.json" in names:  # churnguard.uplift.model's file
                raise ModelFileError(f"{path}: this is an uplift model ('churnguard train-uplift'), not a churn "
                                     "model ('churnguard train'): score and serve take it with --uplift-model")
            if _MANIFEST not in names:
                raise ModelFileError(f"{path}: not a churnguard model file (the archive has no {_MANIFEST})")
            manifest = json.loads(zf.read(_MANIFEST))
            fmt = manifest.get("format") if isinstance(manifest, dict) else None
            if fmt != FORMAT_VERSION:
                raise ModelFileError(
                    f"{path}: model file format {fmt} (written by churnguard {manifest.get('package_version')}) "
                    f"cannot be read by churnguard {__version__} (format {FORMAT_VERSION}); retrain the model "
                    "with this version"
                )
            listed = manifest["members"]
            missing = sorted({MODEL_JSON, BOOSTER_TXT} - set(listed))
            if missing or not set(listed) <= names:
                raise ModelFileError(f"{path}: the model file is incomplete (members missing: "
                                     f"{', '.join(missing or sorted(set(listed) - names))}); copy it again or retrain")
            members = {name: zf.read(name) for name in listed}
            for name, data in members.items():
                if len(data) != listed[name]["bytes"] or hashlib.sha256(data).hexdigest() != listed[name]["sha256"]:
                    raise ModelFileError(f"{path}: the model file is corrupted ({name} does not match its "
                                         "SHA-256 in the manifest); copy it again or retrain")
            return members
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ModelFileError(f"{path}: the model file is corrupted ({exc}); copy it again or retrain") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path}: the model file's manifest is damaged ({type(exc).__name__}: {exc}); "
                             "copy it again or retrain") from None
