"""Training on short histories: the snapshot schedule adapted to the data, the cross-validation grouped by
customer that scores a model when no later period is left, and the errors (with advice that works) when there
is nothing to learn from."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnguard.config import LabelConfig, SnapshotConfig, load_config
from churnguard.dataset import load_tables, validate_tables
from churnguard.demo import generate_demo_data, write_demo_data
from churnguard.features import build_features
from churnguard.model._modelcore import BeyondSupport, Histories, SeasonalParetoNBD
from churnguard.scoring import reasons
from churnguard.scoring.score import REASON_COLUMNS, model_population
from churnguard.training.evaluation import model_card, support_sentence
from churnguard.training.procedure import fit_procedure, judge, plan_training
from churnguard.training.run import LocalRows, support_facts, with_schedule
from churnguard.training.snapshots import fit_schedule, has_backtest, snapshot_dates

FIRST, LAST = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-12-31")  # 365 days apart (2024 is a leap year)


def _days(*isos: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(d) for d in isos]


def test_the_configured_schedule_stays_when_it_leaves_room_for_a_backtest():
    snaps = SnapshotConfig()
    assert fit_schedule(FIRST, pd.Timestamp("2025-12-31"), LabelConfig(horizon_days=90), snaps) is snaps


def test_a_year_and_a_quarter_horizon_shortens_the_history_and_keeps_a_backtest():
    # Horizon 90: today is day 365, the backtest scores day 275 and its snapshots end at day 185; one of them
    # must end its outcome window by then (day <= 95) and have the history before it. 180, 150 and 120 days of
    # history do not fit at any cadence; 90 days at a 30-day cadence give 95, 125, 155, 185.
    snaps = fit_schedule(FIRST, LAST, LabelConfig(horizon_days=90), SnapshotConfig())
    assert (snaps.min_history_days, snaps.cadence_days, snaps.max_snapshots) == (90, 30, 24)
    assert has_backtest(FIRST, LAST, LabelConfig(horizon_days=90), snaps)


def test_a_year_and_a_half_year_horizon_gets_three_snapshots_and_no_backtest():
    # Horizon 182: the newest labelled snapshot is day 183 (2024-07-02); a backtest would need a snapshot by
    # day 1. With 180 days of history only day 183 fits (183 - 7 = 176 < 180) at any cadence; with 150 days a
    # 30-day cadence gives 153 and 183, a 15-day one 153, 168 and 183: the first with 3 snapshots.
    labels = LabelConfig(horizon_days=182)
    snaps = fit_schedule(FIRST, LAST, labels, SnapshotConfig())
    assert (snaps.min_history_days, snaps.cadence_days, snaps.max_snapshots) == (150, 15, 48)
    assert snapshot_dates(FIRST, LAST, labels, snaps) == _days("2024-06-02", "2024-06-17", "2024-07-02")
    assert not has_backtest(FIRST, LAST, labels, snaps)


def test_too_short_for_any_snapshot_says_which_horizon_fits():
    # 2024-01-01 .. 2024-08-30: 242 days; 90 days of history and a 182-day outcome window do not fit.
    with pytest.raises(ValueError, match=r"\(242 days\).*--horizon-days 152 or less"):
        fit_schedule(FIRST, pd.Timestamp("2024-08-30"), LabelConfig(horizon_days=182), SnapshotConfig())


def test_support_is_the_history_before_the_newest_snapshot_and_counts_longer_silences():
    # The data starts on 2024-01-01 (a purchase at 08:30); the newest snapshot is 2024-07-02, 183 days later
    # (2024 is a leap year): a customer of that snapshot who bought on the first day has been silent 183 days,
    # the longest silence any training customer can have. Today's silences 0 and 183 are within it; 184 and
    # 364 are beyond: 2 of 4.
    facts = support_facts(pd.Timestamp("2024-01-01 08:30"), pd.Timestamp("2024-07-02"), 365,
                          np.array([0.0, 183.0, 184.0, 364.0]))
    assert facts == {"support_days": 183, "beyond_support_share": 0.5, "lookback_days": 365}
    # Two and a half years before the newest snapshot: every silence of the 365-day lookback window is held.
    facts = support_facts(pd.Timestamp("2022-01-01"), pd.Timestamp("2024-07-02"), 365, np.array([0.0, 364.0]))
    assert facts == {"support_days": 365, "beyond_support_share": 0.0, "lookback_days": 365}
    assert support_facts(FIRST, pd.Timestamp("2024-07-02"), 365, np.array([]))["beyond_support_share"] == 0.0


def test_support_sentence_says_who_is_beyond_and_what_removes_the_gap():
    s = {"support_days": 183, "beyond_support_share": 0.184, "lookback_days": 365, "horizon_days": 182}
    assert support_sentence(s) == (
        "support: the model learned from customers silent up to 183 days (the history before its newest "
        "snapshot); 18.4% of today's customers have been silent longer and get the probability of the longest "
        "silence it learned from, likely too low for them. With 547 days of history (labels.lookback_days + "
        "horizon_days) it learns from every silence of the lookback window")
    # With the purchases' seasonal model (short histories without a backtest), it gives them their probability.
    assert "and get the probability of the purchases' seasonal model instead, which follows their own buying " \
           "rhythm and silence (the trees would give them that of the longest silence they learned from). With " \
           "547 days" in support_sentence({**s, "level_correction": "purchases"})


def test_support_facts_use_no_purchase_after_today():
    # Today is 2024-12-31: purchases after it (a return of the customer silent since February) change nothing.
    from churnguard.features import build_features
    from churnguard.reporting.monitoring import drift_population

    tx = pd.DataFrame({"customer_id": ["a", "b", "c"], "order_id": ["1", "2", "3"], "amount": [10.0, 20.0, 30.0],
                       "timestamp": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-12-01"])})
    later = pd.DataFrame({"customer_id": ["b", "d"], "order_id": ["4", "5"], "amount": [5.0, 6.0],
                          "timestamp": pd.to_datetime(["2025-01-02", "2025-01-03"])})
    config, today = load_config(), pd.Timestamp("2024-12-31")

    def facts(transactions):
        feats = build_features(validate_tables(transactions, config=config.data), today, config.features)
        recency = drift_population(feats, 365)["recency_days"].to_numpy()
        return support_facts(FIRST, pd.Timestamp("2024-07-02"), 365, recency)

    # a: 365 days silent (outside the lookback window), b: 334 (beyond 183), c: 30 (within).
    assert facts(tx) == facts(pd.concat([tx, later], ignore_index=True)) == {
        "support_days": 183, "beyond_support_share": 0.5, "lookback_days": 365}


def _procedure(tables, config):
    """The training procedure without the model file and MLflow: the schedule, the scorecard, the model."""
    first, last = tables.transactions["timestamp"].min(), tables.last_date()
    config = with_schedule(config, first, last)
    plan = plan_training(first, last, config.labels, config.snapshots)
    source = LocalRows(tables, config, last, lambda _msg: None)
    return judge(source, first, plan, config), fit_procedure(source, plan, config.model)


QUICK = {"num_boost_round": 60}  # these tests check which path trains, not how well


def _demo_tables(n: int, end: str, seed: int = 11):
    demo = generate_demo_data(n, seed=seed, start="2024-01-01", end=end)
    return validate_tables(demo.transactions, demo.tickets, demo.customers, config=load_config().data)


@pytest.mark.slow
def test_following_the_horizon_advice_trains():
    tables = _demo_tables(1500, "2024-08-30")
    config = load_config().with_overrides(labels={"horizon_days": 182}, model=QUICK)
    with pytest.raises(ValueError, match=r"--horizon-days \d+ or less") as err:
        _procedure(tables, config)
    horizon = int(re.search(r"--horizon-days (\d+) or less", str(err.value)).group(1))
    backtest, _ = _procedure(tables, config.with_overrides(labels={"horizon_days": horizon}))
    assert backtest.evaluation == "grouped_cv"
    assert 0.5 < backtest.scorecards["model"]["roc_auc"] <= 1


@pytest.mark.slow
def test_too_few_customers_says_so_and_more_customers_train():
    config = load_config().with_overrides(labels={"horizon_days": 182}, model=QUICK)
    with pytest.raises(ValueError, match=r"nothing to learn from: \d+ customers .* at least 100\. Provide the "
                                         r"data of more customers"):
        _procedure(_demo_tables(60, "2024-12-31"), config)
    backtest, _ = _procedure(_demo_tables(600, "2024-12-31"), config)
    assert backtest.evaluation == "grouped_cv"


def _weekly_buyers(n: int = 210) -> pd.DataFrame:
    """``n`` customers who each buy every 7 days, on the weekday ``i % 7``, all year: none ever stops."""
    days = np.arange(0, 366)
    rows = [(f"c{i:03d}", d) for i in range(n) for d in days[days % 7 == i % 7]]
    tx = pd.DataFrame(rows, columns=["customer_id", "day"])
    return pd.DataFrame({"customer_id": tx["customer_id"], "amount": 10.0,
                         "timestamp": (FIRST + pd.to_timedelta(tx["day"], unit="D")).dt.strftime("%Y-%m-%d 10:00")})


@pytest.mark.slow
def test_one_class_only_says_so_and_a_shorter_horizon_trains():
    config = load_config().with_overrides(model=QUICK, snapshots={"max_snapshots": 3})
    tables = validate_tables(_weekly_buyers(), config=config.data)
    with pytest.raises(ValueError, match=r"only 0 churned within 90 days.*Try a shorter --horizon-days"):
        _procedure(tables, config)
    # Within 5 days, a weekly buyer whose next purchase is 6 or 7 days away does not buy: 2 in 7 churn.
    backtest, _ = _procedure(tables, config.with_overrides(labels={"horizon_days": 5}))
    assert backtest.scorecards["model"]["positive_rate"] == pytest.approx(2 / 7, abs=0.01)


@pytest.mark.slow
def test_train_cli_on_a_year_with_a_half_year_horizon(tmp_path):
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from churnguard.cli import app
    from churnguard.model import ChurnModel

    paths = write_demo_data(generate_demo_data(2000, seed=4, start="2024-01-01", end="2024-12-31"), tmp_path)
    out, uri = tmp_path / "m.zip", f"sqlite:///{tmp_path / 'ml.db'}"
    result = CliRunner().invoke(app, [
        "train", "--transactions", str(paths["transactions"]), "--tickets", str(paths["tickets"]),
        "--customers", str(paths["customers"]), "--horizon-days", "182", "--model-out", str(out),
        "--tracking-uri", uri], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())  # rich wraps long cells and titles
    assert "Scorecard of the cross-validation grouped by customer, on 2024-07-02" in text
    assert "since the data leaves no later period to test on" in text
    assert "a snapshot every 15 days from 150 days of history on, adapted to the data" in text
    info = ChurnModel.load(out).require_info()
    assert info.evaluation == "grouped_cv"
    assert info.config.snapshots.cadence_days == 15  # the model file keeps the schedule it used
    assert info.summary["deployed_snapshots"] == ["2024-06-02", "2024-06-17", "2024-07-02"]
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("churnguard").experiment_id])[0]
    assert run.data.params["evaluation"] == "grouped_cv"
    assert run.data.params["schedule_adapted"] == "True"
    assert run.data.params["tune_train_snapshots"] == "none"
    card = client.download_artifacts(run.info.run_id, "model_card.md", str(tmp_path))
    assert "## Scorecard (cross-validation grouped by customer, on 2024-07-02)" in Path(card).read_text()
    # No later period to choose a level correction on: the deployed model takes the level of the purchases'
    # seasonal Pareto/NBD (its calibrator maps the raw scores onto that model's chances of no purchase over
    # today's customers, keeping their order), and the card and the screen say so, with the fitted season.
    assert run.data.params["level_correction"] == "purchases"
    assert (info.summary["level_shift"], info.summary["level_power"]) == (0.0, 1.0)
    season = info.summary["level_purchases"]["season"]
    assert len(season) == 12
    assert np.mean(season) == pytest.approx(1.0)
    said = ("level_correction: purchases (no backtest to choose one on): the probabilities keep the model's "
            "ranking of the customers and take their overall level from a model of the purchase days themselves "
            "(a Pareto/NBD up to 2024-12-31 whose clock follows the season in the data, January..December: "
            f"{' '.join(f'{v:.2f}' for v in season)}) for the 182 days after it; the cross-validation's scorecard "
            "does not include it")
    assert f"- {said}" in Path(card).read_text()
    assert said in text
    model = ChurnModel.load(out)
    assert model.calibrator_.kind == "isotonic"
    # The newest snapshot has 183 days of history: today's customers silent longer are named, on the card and
    # the screen, with what removes the gap.
    assert info.summary["support_days"] == 183
    assert run.data.params["support_days"] == "183"
    assert 0 < info.summary["beyond_support_share"] < 1
    said = support_sentence(info.summary)
    assert said.startswith(f"support: the model learned from customers silent up to 183 days (the history "
                           f"before its newest snapshot); {info.summary['beyond_support_share']:.1%} of today's")
    assert f"- {said}" in Path(card).read_text()
    assert said in text
    scored = CliRunner().invoke(app, [
        "score", "--model", str(out), "--transactions", str(paths["transactions"]), "--tickets",
        str(paths["tickets"]), "--customers", str(paths["customers"]), "--out", str(tmp_path / "s.csv")])
    assert scored.exit_code == 0, scored.output
    scores = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert (scores["churn_probability"] != "").any()
    # Each scored customer silent longer than 183 days is told so among their reasons; no other customer is.
    silent = (pd.to_datetime(scores["as_of"]) - pd.to_datetime(scores["last_purchase_date"])).dt.days
    beyond = (scores["churn_probability"] != "") & (silent > 183)
    told = scores[REASON_COLUMNS].apply(
        lambda row: reasons.beyond_support_text(183, rhythm=True) in row.tolist(), axis=1)
    assert beyond.any()
    assert (~beyond).any()
    assert (told == beyond).all()
    # They get the purchases' seasonal model's probability: the one the model file keeps, as of today, for the
    # model's horizon; `score` and the model's own predict_proba agree on every customer.
    assert model.beyond_ == BeyondSupport(183, 182, "2024-12-31", SeasonalParetoNBD.from_facts(info.summary["level_purchases"]))
    tables = load_tables(paths["transactions"], paths["tickets"], paths["customers"], config=info.config.data)
    feats = build_features(tables, pd.Timestamp("2024-12-31"), info.config.features, model_population(model))
    feats = feats.set_index("customer_id").loc[scores.loc[scores["churn_probability"] != "", "customer_id"]]
    mine, proba = model.predict_proba(feats), scores.set_index("customer_id")["churn_probability"]
    np.testing.assert_allclose(pd.to_numeric(proba).loc[feats.index], mine, rtol=0, atol=5e-5 + 1e-12)  # 4 places
    trees = model.calibrator_.probability(model.predict_raw(feats))
    far = feats["recency_days"].to_numpy() > 183
    assert (mine[~far] == trees[~far]).all()
    assert np.abs(mine[far] - trees[far]).mean() > 0.01
    h = Histories.of_features(feats[far], "2024-12-31")
    np.testing.assert_allclose(mine[far], model.beyond_.purchases.no_purchase(h, "2024-12-31", 182), rtol=0, atol=1e-12)


def test_run_training_keeps_the_configured_schedule_on_long_data(trained):
    s = trained["result"].summary
    assert s["evaluation"] == "backtest"
    assert s["schedule_adapted"] is False
    assert (s["support_days"], s["beyond_support_share"]) == (365, 0.0)  # every silence of the lookback window
    assert "support:" not in model_card(s, trained["result"].scorecards, trained["result"].verdict)
    assert trained["result"].model.info.config.snapshots == trained["cfg"].snapshots
