"""The churn model: LightGBM with early stopping plus a probability calibrator, and its signed model file.

``ChurnModel`` follows scikit-learn's contract: ``__init__`` only stores settings, learned state ends in
``_``, ``fit`` returns ``self``, and using an unfitted model raises :class:`NotFittedError`.

Model file format (``.joblib``): a magic line, a JSON header line, then a joblib payload holding only plain
data (the booster as LightGBM's text format, calibrator arrays, feature specs, metadata). The header records
the payload's length, SHA-256 and an HMAC-SHA256 signature. :func:`ChurnModel.load` checks all three before
unpickling anything, so a truncated, corrupted or tampered file is refused without running code from it.
The signing key comes from ``$CHURNGUARD_MODEL_KEY`` or, when unset, from a key file
(``$CHURNGUARD_KEY_FILE``, default ``~/.config/churnguard/model.key``) created on the first save.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnguard import __version__
from churnguard._io import atomic_write_bytes
from churnguard._modelcore import (
    PROBABILITY_FLOOR,  # noqa: F401  (re-exported: other modules import it from here)
    Calibrator,
    category_codes,
    feature_matrix,
    numbers,
)
from churnguard._modelcore import logit as _logit

__all__ = ["FORMAT_VERSION", "ChurnModel", "ModelFileError", "NotFittedError", "feature_columns"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_MAGIC = b"CHURNGUARD-MODEL\n"
_MAX_HEADER = 64 * 1024
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


class _Calibrator(Calibrator):
    """:class:`churnguard._modelcore.Calibrator` (the arithmetic, shared with the MLflow model) fitted with
    scikit-learn."""

    @classmethod
    def fit(cls, kind: str, raw: np.ndarray, y: np.ndarray) -> _Calibrator:
        if kind == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
            return cls(kind, tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6).fit(_logit(raw).reshape(-1, 1), y)
        return cls(kind, coef=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))


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
        metadata: anything to keep with the model (training window, scorecard, config, ...).
    """

    params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 500
    early_stopping_rounds: int = 30
    calibration: str = "isotonic"
    seed: int = 42
    monotone_constraints: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def fit(self, x_train: pd.DataFrame, y_train, x_valid: pd.DataFrame, y_valid) -> ChurnModel:
        """Train on ``x_train``, early-stop and calibrate on ``x_valid`` (a later snapshot).

        Each set goes to LightGBM as one float64 matrix (:meth:`_matrix`, the same values LightGBM would take
        from :meth:`prepare`'s DataFrame, so the same model), dropped as soon as LightGBM has binned it: while
        the trees grow a set costs about one byte per value. (float32 would halve the matrix but moves bin
        boundaries: on the 5,000-customer demo it changed the early-stopping round from 80 to 90.)
        """
        import lightgbm as lgb

        self.feature_names_ = feature_columns(x_train)
        self.categories_ = {
            c: list(x_train[c].cat.categories) for c in self.feature_names_ if isinstance(x_train[c].dtype, pd.CategoricalDtype)
        }
        params = {"objective": "binary", "metric": "binary_logloss", "verbose": -1, **self.params, "seed": self.seed}
        if self.monotone_constraints:
            params["monotone_constraints"] = [self.monotone_constraints.get(c, 0) for c in self.feature_names_]
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
        self.calibrator_ = _Calibrator.fit(self.calibration, self.predict_raw(x_valid), np.asarray(y_valid))
        return self

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        """The model inputs as one float64 array (rows x features, column-major) for LightGBM to bin: numbers
        as :meth:`prepare` makes them, categoricals as their position in the training categories (NaN when
        missing or unseen), which is what LightGBM makes of :meth:`prepare`'s categoricals."""
        return feature_matrix(features, self.feature_names_, self.categories_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise NotFittedError("this ChurnModel is not fitted yet: call fit() or ChurnModel.load(path)")

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
        """Calibrated probability of churn within the horizon, one value per row."""
        self._check_fitted()
        return self.calibrator_.probability(self.predict_raw(features))

    def proba_from_raw_score(self, raw: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` from LightGBM's raw scores (log-odds): its sigmoid, as LightGBM computes it,
        then the calibration."""
        from churnguard._treeshap import lightgbm_probability, sigmoid_scale

        self._check_fitted()
        scale = sigmoid_scale(self.booster_)
        raw = np.asarray(raw, dtype="float64").tolist()
        return self.calibrator_.probability(np.array([lightgbm_probability(r, scale) for r in raw]))

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

    def score(
        self,
        *,
        transactions,
        tickets=None,
        customers=None,
        as_of: str | pd.Timestamp | None = None,
        playbook=None,
        budget: float | None = None,
        control_fraction: float = 0.1,
        seed: int = 0,
    ):
        """Score customers from raw tables (DataFrames in the training data's column names, or file paths).

        Returns a :class:`churnguard.scoring.ScoreResult` with ``scores`` (one row per customer: probability,
        band, value tier, CLV, reasons, action, expected value, selection) and ``rejects`` (with reasons).
        """
        from churnguard.config import DataConfig, load_playbook
        from churnguard.dataset import load_tables, validate_tables
        from churnguard.scoring import score_tables

        self._check_fitted()
        data_cfg = DataConfig.model_validate(self.metadata["config"]["data"])
        if isinstance(transactions, pd.DataFrame):
            tables = validate_tables(transactions, tickets, customers, config=data_cfg)
        else:
            tables = load_tables(transactions, tickets, customers, config=data_cfg)
        return score_tables(self, tables, as_of, playbook or load_playbook(), budget=budget,
                            control_fraction=control_fraction, seed=seed)

    # -- the model file ---------------------------------------------------------------------------------

    def _payload(self) -> dict[str, Any]:
        return {
            "booster": self.booster_.model_to_string(num_iteration=self.best_iteration_),
            "calibrator": self.calibrator_.__dict__,
            "feature_names": list(self.feature_names_),
            "categories": self.categories_,
            "best_iteration": self.best_iteration_,
            "settings": {
                "params": self.params,
                "num_boost_round": self.num_boost_round,
                "early_stopping_rounds": self.early_stopping_rounds,
                "calibration": self.calibration,
                "seed": self.seed,
                "monotone_constraints": self.monotone_constraints,
            },
            "metadata": self.metadata,
        }

    def save(self, path: str | Path) -> Path:
        """Write the signed model file atomically (temp file, then rename)."""
        import joblib

        self._check_fitted()
        buf = io.BytesIO()
        joblib.dump(self._payload(), buf)
        payload = buf.getvalue()
        header = {
            "format": FORMAT_VERSION,
            "package_version": __version__,
            "payload_bytes": len(payload),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "signature": hmac.new(_signing_key(create=True), payload, hashlib.sha256).hexdigest(),
        }
        return atomic_write_bytes(path, _MAGIC + json.dumps(header).encode() + b"\n" + payload)

    @classmethod
    def load(cls, path: str | Path) -> ChurnModel:
        """Load a model file after checking its format, length, digest and signature.

        Raises:
            ModelFileError: the file is missing, not a churnguard model, from an incompatible format,
                truncated, corrupted, or not signed with this machine's key.
        """
        import joblib
        import lightgbm as lgb

        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: model file not found")
        blob = path.read_bytes()
        if not blob.startswith(_MAGIC):
            raise ModelFileError(f"{path}: not a churnguard model file (it does not start with the churnguard header)")
        end = blob.find(b"\n", len(_MAGIC), len(_MAGIC) + _MAX_HEADER)
        try:
            header = json.loads(blob[len(_MAGIC) : end])
        except ValueError:
            raise ModelFileError(f"{path}: the model file header is damaged") from None
        if header.get("format") != FORMAT_VERSION:
            raise ModelFileError(
                f"{path}: model file format {header.get('format')} (written by churnguard "
                f"{header.get('package_version')}) cannot be read by churnguard {__version__} (format {FORMAT_VERSION}); "
                "retrain the model with this version"
            )
        payload = blob[end + 1 :]
        if len(payload) != header["payload_bytes"]:
            raise ModelFileError(
                f"{path}: the model file is truncated or padded ({len(payload)} payload bytes, expected "
                f"{header['payload_bytes']}); copy it again or retrain"
            )
        if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
            raise ModelFileError(f"{path}: the model file is corrupted (checksum mismatch); copy it again or retrain")
        expected = hmac.new(_signing_key(create=False), payload, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(header.get("signature"))):
            raise ModelFileError(
                f"{path}: the model file's signature does not match the signing key: it was changed after it was "
                "written, or signed with another key (set CHURNGUARD_MODEL_KEY to the key it was trained with). "
                "Refusing to load it, because loading runs code from the file"
            )
        data = joblib.load(io.BytesIO(payload))
        model = cls(**data["settings"], metadata=data["metadata"])
        model.booster_ = lgb.Booster(model_str=data["booster"])
        model.calibrator_ = _Calibrator(**data["calibrator"])
        model.feature_names_ = data["feature_names"]
        model.categories_ = data["categories"]
        model.best_iteration_ = data["best_iteration"]
        return model


def _key_file() -> Path:
    return Path(os.environ.get("CHURNGUARD_KEY_FILE") or Path.home() / ".config" / "churnguard" / "model.key")


def _signing_key(*, create: bool) -> bytes:
    """The HMAC key: $CHURNGUARD_MODEL_KEY, else the key file (created with mode 0600 when saving)."""
    env = os.environ.get("CHURNGUARD_MODEL_KEY")
    if env:
        return env.encode()
    path = _key_file()
    if not path.is_file():
        if not create:
            raise ModelFileError(
                f"no model signing key: set CHURNGUARD_MODEL_KEY or provide the key file {path} that the model "
                "was trained with"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        logger.warning("created a model signing key at %s; models load only where this key is present", path)
    return path.read_text().strip().encode()
