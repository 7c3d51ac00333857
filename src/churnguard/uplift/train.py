"""The uplift training run: campaign rows -> a split -> a scorecard on held-out rows -> the model fitted on every
row -> MLflow.

With more than one campaign (told apart by ``campaign_id``, else by ``sent_at``) the latest one is held out: a
model fitted on the earlier campaigns' rows whose outcome window ended by its ``sent_at`` (nothing it learns from
happened after the day it is judged on) is judged on its customers. With one campaign (or no earlier outcome
complete by then) the customers are split by id (all rows of a customer on one side): :data:`TEST_SHARE` of
them are held out, judged by a model fitted on the others. The model ranks the held-out rows by predicted uplift
(for the action they were drawn); the scorecard (``churnguard.uplift.evaluation``) compares that ranking with the ranking by churn risk (1 - the chance
of buying without contact, learned on the control customers) and with random ones, and tabulates the observed
uplift per decile of predicted uplift. The model saved is then fitted on all customers. Each action's measured
average effect, the fallback for actions with too few customers, is ``campaign-readout``'s ``uplift``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard.reporting.monitoring import MIN_GROUP, campaign_readout
from churnguard.uplift import evaluation as ev
from churnguard.uplift.model import UpliftModel
from churnguard.uplift.training_set import CampaignRows, campaign_rows

if TYPE_CHECKING:
    from churnguard.config import Config
    from churnguard.dataset import Tables

__all__ = ["TEST_SHARE", "UpliftResult", "held_out", "latest_campaign", "measured_effects", "scorecard_split",
           "train_uplift"]

logger = logging.getLogger(__name__)

TEST_SHARE = 0.3
_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class UpliftResult:
    """The fitted model and where it went, the scorecard (``uplift``, ``risk``, ``random`` -> ``qini``,
    ``auuc``; per learned action ``uplift_<action>``), the decile table, the measured average effect per action
    (the read-out), the rows on each side of the split and how it was made (``split``), and the MLflow run (None
    when not tracked)."""

    model: UpliftModel
    model_path: Path
    scorecard: dict[str, dict[str, float]]
    deciles: pd.DataFrame
    readout: pd.DataFrame
    train_rows: int
    test_rows: int
    split: str
    run_id: str | None = None
    tracking_uri: str | None = None
    held_out_groups: tuple[int, int] | None = None  # contacted and control customers the scorecard is judged on

    def metrics(self) -> dict[str, float]:
        """The scorecard as flat metrics: ``test_qini_uplift``, ``test_qini_risk``, ``test_qini_random``, ..."""
        return {f"test_{k}_{name}": v for name, card in self.scorecard.items() for k, v in card.items()}

    def summary(self) -> str:
        """What a person reads after training: each action's model or fallback, the scorecard, the files."""
        rows = sum(e.n_treated + e.n_control for e in self.model.effects_.values())
        lines = [(f"learned from {rows:,} campaign customers; scorecard: {self.test_rows:,} held out "
                  f"({self.split}), judged by a model fitted on {self.train_rows:,}")]
        for e in self.model.effects_.values():
            lines.append(f"  {e.action}: " + (f"learned from {e.n_treated:,} contacted, {e.n_control:,} control"
                                              if e.kind == "model" else e.note))
            lines.append(f"    measured average effect {e.average:+.1%}" if np.isfinite(e.average) else
                         "    measured average effect: none")
        lines.append("held-out customers, ranked by:   Qini     AUUC")
        if self.held_out_groups is not None and min(self.held_out_groups) < MIN_GROUP:
            lines.append(f"  (too few to judge: contacted {self.held_out_groups[0]:,}, control "
                         f"{self.held_out_groups[1]:,}; a read-out needs {MIN_GROUP} each: these figures are noise)")
        for name in ("uplift", "risk", "random"):
            card = self.scorecard[name]
            lines.append(f"  {name:<28} {card['qini']:+.4f}  {card['auuc']:+.4f}")
        lines.append(f"model -> {self.model_path}")
        if self.run_id:
            lines.append(f"MLflow run {self.run_id} ({self.tracking_uri})")
        return "\n".join(lines)


def held_out(customer_ids: pd.Series, share: float = TEST_SHARE, seed: int = 0) -> np.ndarray:
    """Whether each row's customer is held out: a seeded hash of the id, so a customer's rows stay together."""
    h = pd.util.hash_array(customer_ids.astype(str).to_numpy(dtype=object), hash_key=f"uplift{seed:012d}"[:16])
    return (h % np.uint64(10_000)) < np.uint64(round(share * 10_000))


def latest_campaign(frame: pd.DataFrame) -> np.ndarray | None:
    """The rows of the campaign sent last (campaigns told apart by ``campaign_id`` where the rows have one, else
    by ``sent_at``; a campaign is sent on its first ``sent_at``), or None when the rows hold only one campaign."""
    key = frame["sent_at"].dt.strftime("%Y-%m-%d")
    if "campaign_id" in frame:
        key = frame["campaign_id"].astype("string").fillna(key)
    start = frame["sent_at"].groupby(key.to_numpy()).transform("min")
    latest = (start == start.max()).to_numpy()
    return None if latest.all() else latest


def scorecard_split(frame: pd.DataFrame, horizon_days: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """The rows the scorecard's model learns from, those it is judged on, and how they were chosen (see the
    module docstring)."""
    later = latest_campaign(frame)
    if later is not None:
        start = frame.loc[later, "sent_at"].min()
        learn = ~later & (frame["sent_at"] + horizon_days * _DAY <= start).to_numpy()
        if learn.any():
            return learn, later, f"the latest campaign, sent {start.date()}"
    test = held_out(frame["customer_id"], seed=seed)
    return ~test, test, f"{TEST_SHARE:.0%} of the customers by a hash of the id"


def measured_effects(rows: pd.DataFrame, transactions: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """``campaign-readout`` of the campaign rows: per action, contacted vs control and the average ``uplift``."""
    as_scores = pd.DataFrame({"customer_id": rows["customer_id"], "as_of": rows["sent_at"], "action": rows["action"],
                              "selected": True, "control_group": ~rows["treated"].to_numpy(dtype=bool)})
    return campaign_readout(as_scores, transactions, horizon_days=horizon_days)


def _scorecard(model: UpliftModel, test: pd.DataFrame
               ) -> tuple[dict[str, dict[str, float]], pd.DataFrame, dict[str, np.ndarray]]:
    """Rankings of the held-out rows by predicted uplift (for each row's action), by risk and at random: the
    scorecard, the decile table and the two rankings."""
    predicted = model.predict(test)
    column = pd.Index(predicted.columns).get_indexer(test["action"])  # -1: an action the model does not know
    own = np.where(column >= 0, predicted.to_numpy()[np.arange(len(test)), np.maximum(column, 0)], np.nan)
    t, y = test["treated"].to_numpy(dtype=bool), test["bought"].to_numpy(dtype=bool)
    rankings = {"uplift": own, "risk": 1 - model.buy_probability(test)}
    card = ev.ranking_card(rankings, t, y)
    for name, e in model.effects_.items():
        arm = (test["action"] == name).to_numpy()
        if e.kind == "model" and arm.any():
            card[f"uplift_{name}"] = {"qini": ev.qini_coefficient(own[arm], t[arm], y[arm]),
                                      "auuc": ev.auuc(own[arm], t[arm], y[arm])}
    return card, ev.decile_table(own, t, y), rankings


def train_uplift(tables: Tables, campaigns: pd.DataFrame, config: Config, *, model_out: str | Path,
                 horizon_days: int = 90, min_customers: int = 200, seed: int = 0, track: bool = True
                 ) -> UpliftResult:
    """Learn per action who contact keeps, score it on held-out rows and save the model (see the module
    docstring); ``track``: record the run in MLflow (``config.tracking``).

    Raises:
        ValueError: the outcome window is not complete, no campaign customer is known, or there is no control
            group.
    """
    if track:
        from churnguard.training.tracking import check_tracking

        check_tracking(config.tracking)  # a store MLflow refuses stops the run now, not after the training
    rows = campaign_rows(tables, campaigns, horizon_days=horizon_days, config=config.features)
    frame = rows.frame
    readout = measured_effects(frame, tables.transactions, horizon_days)
    learn, test, split = scorecard_split(frame, horizon_days, seed)
    # the judged model's fallback averages are measured on its own rows: nothing of the held-out rows leaks in
    judged = _fit(frame[learn], _averages(measured_effects(frame[learn], tables.transactions, horizon_days)),
                  min_customers, seed)
    card, deciles, rankings = _scorecard(judged, frame[test])
    model = _fit(frame, _averages(readout), min_customers, seed)
    info = _info(rows, config, horizon_days, card) | {"scorecard_split": split}
    path = model.save(model_out, info=info)
    model.info_ = info
    treated = frame["treated"].to_numpy(dtype=bool)[test]
    result = UpliftResult(model, path, card, deciles, readout, int(learn.sum()), int(test.sum()), split,
                          held_out_groups=(int(treated.sum()), int((~treated).sum())))
    return _tracked(result, config, horizon_days, frame[test], rankings) if track else result


def _averages(readout: pd.DataFrame) -> dict[str, float]:
    return dict(zip(readout["action"], readout["uplift"], strict=True))


def _fit(frame: pd.DataFrame, averages: dict[str, float], min_customers: int, seed: int) -> UpliftModel:
    return UpliftModel(min_customers=min_customers, seed=seed).fit(
        frame, frame["treated"].to_numpy(dtype=bool), frame["bought"].to_numpy(dtype=bool),
        frame["action"].to_numpy(dtype=object), averages)


def _info(rows: CampaignRows, config: Config, horizon_days: int, card: dict[str, dict[str, float]]
          ) -> dict[str, Any]:
    return {"horizon_days": horizon_days, "population": rows.population.to_dict(),
            "features": config.features.model_dump(mode="json"),
            "campaign_days": sorted({str(d.date()) for d in rows.frame["sent_at"]}),
            "customers": int(rows.frame["customer_id"].nunique()), "scorecard": card}


def _tracked(result: UpliftResult, config: Config, horizon_days: int, test: pd.DataFrame,
             rankings: dict[str, np.ndarray]) -> UpliftResult:
    """Record the run (params, metrics, the decile table and charts of the held-out customers, the model file)
    and say where it went."""
    from dataclasses import replace

    from churnguard.training.tracking import log_uplift_run

    days = result.model.info_["campaign_days"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        result.deciles.to_csv(tmp / "uplift_deciles.csv", index=False)
        ev.plot_deciles(result.deciles, tmp / "uplift_deciles.png")
        t, y = test["treated"].to_numpy(dtype=bool), test["bought"].to_numpy(dtype=bool)
        ev.plot_qini(rankings, t, y, tmp / "qini_curve.png")
        result.readout.to_csv(tmp / "campaign_readout.csv", index=False)
        params = {"horizon_days": horizon_days, "campaign_days": ",".join(days), "train_rows": result.train_rows,
                  "test_rows": result.test_rows, "test_split": result.split, "min_customers": result.model.min_customers,
                  "learner": "T-learner (LightGBM)"}
        tags = {f"effect_{e.action}": e.kind for e in result.model.effects_.values()}
        run_id, uri = log_uplift_run(config.tracking, name=f"train-uplift {days[-1]} h{horizon_days}", params=params,
                                     metrics=result.metrics(), tags=tags,
                                     artifacts=[*sorted(tmp.iterdir()), result.model_path])
    return replace(result, run_id=run_id, tracking_uri=uri)
