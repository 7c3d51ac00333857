"""The churn model: a calibrated LightGBM classifier, its learned state and its file.

``churn_model`` (``ChurnModel``: fit, predict, save, load), ``info`` (``ModelInfo``: what training learned,
parsed once when the file is loaded), ``explain`` (TreeSHAP contributions and probabilities for any number of
rows), ``_modelcore`` (the prediction rules and the model file's reader, shared with the MLflow model, which
runs without churnguard).
"""

from churnguard.model._legacy import convert_model_file
from churnguard.model.churn_model import (
    FORMAT_VERSION,
    ChurnModel,
    ModelFileError,
    NotFittedError,
    feature_columns,
)
from churnguard.model.info import ModelInfo

__all__ = ["FORMAT_VERSION", "ChurnModel", "ModelFileError", "ModelInfo", "NotFittedError", "convert_model_file",
           "feature_columns"]
