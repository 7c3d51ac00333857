"""The MLflow pyfunc wrapper. MLflow runs this file ("models from code") when it loads a logged model;
nothing else in churnguard imports it, so only the training run depends on MLflow."""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
import pandas as pd

from churnguard.model import ChurnModel


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """Returns calibrated churn probabilities (not class labels) for rows of model features."""

    def load_context(self, context) -> None:
        self.model = ChurnModel.load(context.artifacts["model_file"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        # A DataFrame hint tells MLflow to take the signature logged with the model, not infer one from hints.
        return self.model.predict_proba(pd.DataFrame(model_input))


mlflow.models.set_model(ChurnPyfunc())
