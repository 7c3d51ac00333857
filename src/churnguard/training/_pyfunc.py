"""The MLflow pyfunc wrapper. MLflow runs this file ("models from code") when it loads a logged model;
nothing else in churnguard imports it, so only the training run depends on MLflow.

Its artifact is the churnguard model file, read by ``_modelcore.py`` (shipped with the model, ``code_paths``),
so it needs only mlflow, lightgbm, numpy and pandas.
"""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
import pandas as pd

try:  # the copy logged with the model (MLflow puts its code directory on sys.path), which matches its files
    from _modelcore import StandaloneModel
except ImportError:  # run without the model's code directory on sys.path
    from churnguard.model._modelcore import StandaloneModel


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """Returns calibrated churn probabilities (not class labels) for rows of model features; for a model with a
    churn curve, a frame of ``churn_probability`` and one ``churn_probability_<h>d`` column per horizon. A model
    whose purchases' model scores the customers silent longer than any it learned from takes an optional
    ``as_of`` column (ISO day; without it, the day the model was trained as of)."""

    def load_context(self, context) -> None:
        self.model = StandaloneModel.load(context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        # A DataFrame hint tells MLflow to take the signature logged with the model, not infer one from hints.
        return self.model.predict(pd.DataFrame(model_input))


mlflow.models.set_model(ChurnPyfunc())
