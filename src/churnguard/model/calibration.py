"""Calibration of LightGBM's probabilities, fitted with scikit-learn; the arithmetic that applies it is
:class:`churnguard.model._modelcore.Calibrator`, shared with the MLflow model."""

from __future__ import annotations

import numpy as np

from churnguard.model._modelcore import Calibrator, logit

__all__ = ["fit_calibrator"]


def fit_calibrator(kind: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
    """A ``sigmoid`` (Platt scaling on the log-odds: keeps the order of ``raw``) or ``isotonic`` (steps)
    calibrator of ``raw`` for the outcomes ``y``."""
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return Calibrator(kind, tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6).fit(logit(raw).reshape(-1, 1), y)
    return Calibrator(kind, coef=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))
