"""Learning from campaigns: which customers an action keeps (uplift), not just who is at risk.

In data-flow order: ``training_set`` (campaign customers, point-in-time features as of ``sent_at`` from the one
feature kernel, and whether they bought within the horizon after it), ``model`` (a T-learner per action on
LightGBM, with the measured average effect for actions with too few customers), ``evaluation`` (Qini, AUUC and
observed uplift per decile), ``train`` (the run: grouped split, scorecard, MLflow through
``churnguard.training.tracking``) and ``score`` (uplift and incremental value per customer, the best action the
playbook allows, and the selection within a budget through ``churnguard.scoring.rules``).
"""

from churnguard.uplift.model import Effect, UpliftModel, UpliftModelError
from churnguard.uplift.train import UpliftResult, train_uplift

__all__ = ["Effect", "UpliftModel", "UpliftModelError", "UpliftResult", "train_uplift"]
