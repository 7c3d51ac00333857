"""The MLflow pyfunc wrapper, kept apart so that only the training run imports MLflow."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from churnguard.model import ChurnModel


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """Returns calibrated churn probabilities (not class labels) for rows of model features."""

    def load_context(self, context) -> None:
        self.model = ChurnModel.load(context.artifacts["model_file"])

    def predict(self, context, model_input, params=None):
        return self.model.predict_proba(pd.DataFrame(model_input))
