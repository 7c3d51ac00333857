"""Learning from campaigns: the campaigns table, the point-in-time cut at sent_at, the fallback for small actions,
never selecting a customer contact makes worse, and on the demo world the uplift ranking against risk and
random, and uplift targeting against risk targeting on the simulated truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.config import load_config
from churnguard.dataset import DataError, validate_campaigns, validate_tables
from churnguard.demo import generate_demo_data
from churnguard.demo_campaign import CAMPAIGN_ACTIONS, CAMPAIGN_PLAYBOOK, campaign_truth, retained
from churnguard.uplift import UpliftModel, UpliftModelError, train_uplift
from churnguard.uplift.score import best_actions, score_with_uplift, select_by_uplift
from churnguard.uplift.train import TEST_SHARE, latest_campaign, measured_effects, scorecard_split
from churnguard.uplift.training_set import campaign_rows


def _world(n: int, seed: int):
    cfg = load_config()
    demo = generate_demo_data(n, seed=seed, campaign=True)
    tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=cfg.data)
    return demo, tables, validate_campaigns(demo.campaigns, config=cfg.data)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The uplift model trained on the demo world of ``make demo`` (5,000 customers, seed 7), tracked in a
    temporary MLflow store."""
    tmp = tmp_path_factory.mktemp("uplift")
    _demo, tables, campaigns = _world(5000, 7)
    cfg = load_config().with_overrides(tracking={"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"})
    result = train_uplift(tables, campaigns, cfg, model_out=tmp / "uplift.zip")
    return {"result": result, "cfg": cfg, "tmp": tmp, "campaigns": campaigns}


# -- the campaigns table ----------------------------------------------------------------------------------------


def test_campaigns_are_typed_and_mapped():
    raw = pd.DataFrame({"Cust": ["a", "b"], "Day": ["2024-01-02 10:30", "2024-01-02"], "action": ["x", "y"],
                        "treated": ["yes", "0"], "cost": ["2.5", ""]})
    data = load_config().data.model_copy(update={"columns": load_config().data.columns.model_copy(
        update={"campaigns": {"customer_id": "Cust", "sent_at": "Day"}})})
    out = validate_campaigns(raw, config=data)
    assert out["sent_at"].tolist() == [pd.Timestamp("2024-01-02")] * 2  # a day: the time is dropped
    assert out["treated"].tolist() == [True, False]
    assert out["cost"].iloc[0] == 2.5
    assert np.isnan(out["cost"].iloc[1])


@pytest.mark.parametrize(("column", "value", "message"), [
    ("treated", "maybe", "column 'treated': 1 row(s) are not true/false, e.g. 'maybe'"),
    ("sent_at", "someday", "column 'sent_at': 1 row(s) have an unparseable date"),
    ("action", "", "column 'action': 1 row(s) are empty"),
    ("cost", "-3", "column 'cost': 1 row(s) lie outside 0..1,000,000,000,000"),
])
def test_bad_campaign_rows_are_named(column, value, message):
    raw = pd.DataFrame({"customer_id": ["a", "b"], "sent_at": ["2024-01-02"] * 2, "action": ["x", "x"],
                        "treated": ["true", "false"], "cost": ["1", "1"]})
    raw.loc[0, column] = value
    with pytest.raises(DataError, match="campaigns: 1 of 2 campaigns row") as err:
        validate_campaigns(raw, config=load_config().data)
    assert message in str(err.value)


def test_missing_campaign_column_is_named():
    raw = pd.DataFrame({"customer_id": ["a"], "sent_at": ["2024-01-02"], "action": ["x"]})
    with pytest.raises(DataError, match="required campaigns column\\(s\\) 'treated' not found"):
        validate_campaigns(raw, config=load_config().data)


def test_scores_file_is_one_campaign():
    """Selected customers only; sent_at = as_of; treated = not in the control group; cost = action_cost."""
    scores = pd.DataFrame({"customer_id": ["a", "b", "c"], "as_of": ["2025-03-31"] * 3,
                           "action": ["win_back_offer", "win_back_offer", "re_engagement"],
                           "selected": ["True", "True", "False"], "control_group": ["False", "True", "False"],
                           "action_cost": ["10.0", "10.0", "3.0"]})
    out = validate_campaigns(scores, config=load_config().data)
    assert out["customer_id"].tolist() == ["a", "b"]
    assert out["treated"].tolist() == [True, False]
    assert out["sent_at"].tolist() == [pd.Timestamp("2025-03-31")] * 2
    assert out["cost"].tolist() == [10.0, 10.0]


def test_a_scores_csv_file_is_read_as_score_wrote_its_ids(tmp_path):
    """score's CSV quotes an id a spreadsheet would run ('+44 20); read as the campaign, the id is the customer's
    own (+44 20), as compare and campaign-readout read it: it kept the quote, and no transaction matched it."""
    from churnguard._io.spreadsheet import spreadsheet_safe
    from churnguard._io.write import write_table
    from churnguard.dataset import load_campaigns

    scores = pd.DataFrame({"customer_id": ["+44 20", "-7", "c"], "as_of": ["2025-03-31"] * 3,
                           "action": ["win_back_offer"] * 3, "selected": [True, True, False],
                           "control_group": [False, True, False], "action_cost": [10.0, 10.0, 3.0]})
    write_table(spreadsheet_safe(scores), tmp_path / "scores.csv")
    assert pd.read_csv(tmp_path / "scores.csv", dtype=str)["customer_id"].tolist()[:2] == ["'+44 20", "'-7"]
    out = load_campaigns(tmp_path / "scores.csv", config=load_config().data)
    assert out["customer_id"].tolist() == ["+44 20", "-7"]


# -- the point-in-time cut at sent_at -------------------------------------------------------------------------------


def test_purchase_after_sent_at_changes_no_feature():
    demo, tables, campaigns = _world(300, 1)
    cfg = load_config()
    day = campaigns["sent_at"].max()  # the later of the world's two campaigns
    who = campaigns.loc[~campaigns["treated"] & (campaigns["sent_at"] == day), "customer_id"].iloc[0]
    before = campaign_rows(tables, campaigns, horizon_days=90, config=cfg.features).frame
    later = pd.DataFrame({"customer_id": [who, who], "amount": [500.0, 80.0], "order_id": ["X1", "X2"],
                          # the first minute after sent_at, and the last day of the outcome window
                          "timestamp": [day + pd.Timedelta(days=1), day + pd.Timedelta(days=90, hours=12)]})
    more = validate_tables(pd.concat([demo.transactions, later], ignore_index=True), demo.tickets, demo.customers,
                           config=cfg.data)
    after = campaign_rows(more, campaigns, horizon_days=90, config=cfg.features).frame
    features = [c for c in before.columns if c != "bought"]
    pd.testing.assert_frame_equal(before[features], after[features])
    row = ((after["customer_id"] == who) & (after["sent_at"] == day)).to_numpy()
    assert after.loc[row, "bought"].item()  # the outcome sees it
    assert (before.loc[~row, "bought"].to_numpy() == after.loc[~row, "bought"].to_numpy()).all()


def test_purchase_on_sent_at_is_a_feature_not_an_outcome():
    demo, _tables, campaigns = _world(300, 1)
    cfg = load_config()
    day = campaigns["sent_at"].max()
    who = campaigns.loc[campaigns["sent_at"] == day, "customer_id"].iloc[0]
    on_day = pd.DataFrame({"customer_id": [who], "amount": [500.0], "order_id": ["X1"],
                           "timestamp": [day + pd.Timedelta(hours=23, minutes=59)]})
    tx = demo.transactions[~((demo.transactions["customer_id"] == who) & (demo.transactions["timestamp"] > day))]
    more = validate_tables(pd.concat([tx, on_day], ignore_index=True), demo.tickets, demo.customers,
                           config=cfg.data)
    rows = campaign_rows(more, campaigns, horizon_days=90, config=cfg.features).frame
    row = rows[(rows["sent_at"] == day).to_numpy()].set_index("customer_id").loc[who]
    assert row["recency_days"] == 0
    assert not row["bought"]


def test_incomplete_outcome_window_is_refused():
    _, tables, campaigns = _world(300, 1)
    late = campaigns.assign(sent_at=tables.last_date() - pd.Timedelta(days=30))
    with pytest.raises(ValueError, match="outcome window of the campaign of .* ends on .* after the last"):
        campaign_rows(tables, late, horizon_days=90, config=load_config().features)


# -- the scorecard's split -------------------------------------------------------------------------------------------


def _rows(sent_at: list[str], campaign_id: list[str] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(len(sent_at))],
                          "sent_at": pd.to_datetime(sent_at)})
    return frame if campaign_id is None else frame.assign(campaign_id=campaign_id)


def test_latest_campaign_is_held_out():
    # by sent_at: three campaign days; the first one's outcome window (90 days) ends 2025-04-01, before the
    # latest was sent; the second's, 2025-06-30, after it: its rows are neither learned from nor judged
    frame = _rows(["2025-01-01", "2025-01-01", "2025-04-01", "2025-05-01", "2025-05-01"])
    learn, test, split = scorecard_split(frame, 90)
    assert test.tolist() == [False, False, False, True, True]
    assert learn.tolist() == [True, True, False, False, False]
    assert split == "the latest campaign, sent 2025-05-01"


def test_campaign_id_tells_campaigns_apart():
    # one campaign sent over two days (the latest, from its first day 2025-05-01) and an earlier one
    frame = _rows(["2025-01-01", "2025-05-01", "2025-05-03"], ["spring", "summer", "summer"])
    assert latest_campaign(frame).tolist() == [False, True, True]
    # two campaigns sent the same day: no later one to hold out
    assert latest_campaign(_rows(["2025-05-01", "2025-05-01"], ["a", "b"])) is None


@pytest.mark.parametrize("sent_at", [["2025-05-01"] * 40, ["2025-04-01"] * 20 + ["2025-05-01"] * 20])
def test_one_campaign_or_no_complete_earlier_outcome_splits_customers(sent_at):
    """One campaign, or an earlier one whose outcome window (90 days) runs past the latest's sent_at."""
    frame = _rows(sent_at)
    learn, test, split = scorecard_split(frame, 90)
    assert (learn == ~test).all()
    assert 0 < test.sum() < len(frame)
    assert split == f"{TEST_SHARE:.0%} of the customers by a hash of the id"


# -- the fallback on small actions ----------------------------------------------------------------------------------


def test_small_action_falls_back_to_measured_average(tmp_path):
    _, tables, campaigns = _world(1500, 2)
    campaigns = campaigns.copy()
    campaigns.loc[campaigns.index[:60], "action"] = "phone_call"  # about 30 contacted and 30 control
    result = train_uplift(tables, campaigns, load_config(), model_out=tmp_path / "u.zip", min_customers=100,
                          track=False)
    effects = result.model.effects_
    assert effects["phone_call"].kind == "average"
    assert {effects[a].kind for a in CAMPAIGN_ACTIONS} == {"model"}
    rows = campaign_rows(tables, campaigns, horizon_days=90, config=load_config().features).frame
    measured = measured_effects(rows, tables.transactions, 90).set_index("action").loc["phone_call", "uplift"]
    assert effects["phone_call"].average == pytest.approx(measured)
    predicted = UpliftModel.load(result.model_path).predict(rows)
    assert np.allclose(predicted["phone_call"], measured)
    assert predicted["win_back_offer"].std() > 0  # a learned action varies by customer
    assert "phone_call: too few customers to learn who it keeps" in result.summary()


def test_all_control_is_refused_as_no_control_is():
    features = pd.DataFrame({"x": np.arange(6, dtype=float)})
    bought, action = np.array([1, 0, 1, 0, 1, 0]), np.array(["a"] * 6, dtype=object)
    with pytest.raises(ValueError, match="^no contacted customers: every campaign customer is in the control group"):
        UpliftModel().fit(features, np.zeros(6, bool), bought, action, {"a": np.nan})
    with pytest.raises(ValueError, match="^no control customers"):
        UpliftModel().fit(features, np.ones(6, bool), bought, action, {"a": np.nan})


def test_action_without_contacted_customers_has_no_effect_and_blocks_no_other(tmp_path):
    # action b: 1,200 in control, none contacted: no effect to measure (it read "+nan%"), and its NaN uplift
    # must not stop a customer allowed b from getting a
    n = 1_400
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"x": rng.random(n)})
    action = np.where(np.arange(n) < 200, "a", "b").astype(object)
    treated = (np.arange(n) < 100)
    model = UpliftModel(min_customers=50).fit(features, treated, rng.random(n) < 0.5, action, {"a": 0.1})
    b = model.effects_["b"]
    assert (b.kind, b.n_treated, b.n_control, np.isnan(b.average)) == ("average", 0, 1_200, True)
    assert b.note.startswith("no contacted customers (contacted 0, control 1,200): its effect cannot be measured")
    uplift = model.predict(features.head(2))
    assert uplift["b"].isna().all()
    allowed = {"a": np.array([True, False]), "b": np.array([True, True])}
    chosen, lift, _ = best_actions(uplift, allowed, np.array([100.0, 100.0]), {"a": 1.0, "b": 1.0})
    assert chosen.tolist() == ["a", None]  # customer 1: only b allowed, b unknown: the playbook's action stays
    assert np.isnan(lift[1])


def test_model_file_errors_are_clear(tmp_path):
    with pytest.raises(UpliftModelError, match="uplift model file not found"):
        UpliftModel.load(tmp_path / "none.zip")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(UpliftModelError, match="not a churnguard uplift model"):
        UpliftModel.load(tmp_path / "bad.zip")
    with pytest.raises(RuntimeError, match="not fitted"):
        UpliftModel().predict(pd.DataFrame({"x": [1.0]}))


# -- choosing and selecting by incremental value ------------------------------------------------------------------


def test_best_action_is_the_allowed_one_with_the_most_incremental_value():
    uplift = pd.DataFrame({"a": [0.30, 0.30, -0.10], "b": [0.10, 0.10, -0.20]})
    allowed = {"a": np.array([True, False, True]), "b": np.array([True, True, True])}
    action, lift, inc = best_actions(uplift, allowed, np.array([100.0, 100.0, 100.0]), {"a": 10.0, "b": 2.0})
    # customer 0: a = 0.3 x 100 - 10 = 20 beats b = 8; customer 1: a is not allowed, b = 8;
    # customer 2: both lose value, the lesser loss a = -20 (b = -22): chosen, but never selected (below)
    assert action.tolist() == ["a", "b", "a"]
    assert lift.tolist() == [0.30, 0.10, -0.10]
    assert inc == pytest.approx([20.0, 8.0, -20.0])


def test_negative_uplift_is_never_selected():
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    uplift = np.array([0.2, -0.1, 0.05, -0.3])
    incremental = np.array([10.0, 50.0, -5.0, 1e6])  # b and d: a value no negative uplift can give, refused still
    selected, control = select_by_uplift(ids, uplift, incremental, np.full(4, 10.0), budget=None,
                                         control_fraction=0.0)
    assert selected.tolist() == [True, False, False, False]
    assert not control.any()


# -- on the demo world -----------------------------------------------------------------------------------------------


def test_uplift_ranking_beats_risk_and_random_on_demo_world(demo_run):
    from mlflow.tracking import MlflowClient

    result = demo_run["result"]
    metrics = MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    assert metrics["test_qini_uplift"] > metrics["test_qini_risk"]
    assert metrics["test_qini_uplift"] > metrics["test_qini_random"]
    assert metrics["test_qini_uplift"] == pytest.approx(result.scorecard["uplift"]["qini"])
    # the demo world's later campaign is the test set, judged by a model of the earlier one
    assert result.split == "the latest campaign, sent 2025-09-02"
    assert result.test_rows == int((demo_run["campaigns"]["sent_at"] == pd.Timestamp("2025-09-02")).sum())
    deciles = result.deciles
    assert len(deciles) == 10
    assert deciles["n_contacted"].sum() + deciles["n_control"].sum() == result.test_rows
    # the customers ranked first gain from contact, those ranked last lose
    assert deciles["observed_uplift"].iloc[:3].mean() > 0 > deciles["observed_uplift"].iloc[-3:].mean()


def test_uplift_targeting_retains_more_than_risk_targeting(demo_run, model):
    """Another demo world's campaign day, scored by the churn model alone and with the uplift model, at the same
    budget and playbook; each way's contacts get the outcome the simulation drew for their action."""
    from churnguard.scoring import score_tables

    demo, tables, campaigns = _world(5000, 8)
    day = campaigns["sent_at"].max()  # the later of the world's two campaigns
    truth = campaign_truth(demo.campaign_truth, day)
    uplift = demo_run["result"].model
    by_risk = score_tables(model, tables, day, CAMPAIGN_PLAYBOOK, budget=3000, control_fraction=0.0).scores
    by_uplift = score_with_uplift(model, uplift, tables, day, CAMPAIGN_PLAYBOOK, budget=3000,
                                  control_fraction=0.1).scores
    chosen = by_uplift[by_uplift["selected"]]
    assert chosen["control_group"].any()
    assert (chosen["uplift"] > 0).all()
    assert by_uplift.loc[by_uplift["selected"] & ~by_uplift["control_group"], "action_cost"].sum() <= 3000
    nobody = int(truth["bought_untreated"].sum())
    kept_risk = retained(by_risk, truth) - nobody
    kept_uplift = retained(by_uplift.assign(control_group=False), truth) - nobody  # as if all were contacted
    assert kept_uplift > kept_risk


def test_cli_train_uplift_and_score(tmp_path, trained, demo_run):
    runner = CliRunner()
    out = tmp_path / "demo"
    assert runner.invoke(app, ["demo-data", "--out", str(out), "--customers", "2000", "--seed", "5"]).exit_code == 0
    files = ["--transactions", str(out / "transactions.csv"), "--tickets", str(out / "tickets.csv"),
             "--customers", str(out / "customers.csv")]
    result = runner.invoke(app, ["train-uplift", *files, "--campaigns", str(out / "campaigns.csv"), "--model-out",
                                 str(tmp_path / "u.zip"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert result.exit_code == 0, result.output
    assert "held-out customers, ranked by" in result.output
    assert (tmp_path / "u.zip").is_file()
    scores = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", "--model", str(trained["result"].model_path), "--uplift-model",
                                 str(tmp_path / "u.zip"), *files, "--budget", "1000", "--out", str(scores)])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(scores)
    at = rows.columns.get_loc("expected_value")
    assert list(rows.columns[at + 1:at + 3]) == ["uplift", "incremental_value"]
    assert (rows.loc[rows["selected"], "uplift"] > 0).all()
    assert "adds an expected" in " ".join(result.output.split())


def test_a_scorecard_on_too_few_held_out_customers_says_its_figures_are_noise(tmp_path):
    """10 campaign rows held out 2 customers, and the Qini of +0.25 read as any other."""
    from churnguard.uplift.train import UpliftResult

    features = pd.DataFrame({"x": np.arange(8, dtype=float)})
    model = UpliftModel(min_customers=50).fit(features, np.arange(8) % 2 == 0, np.arange(8) % 3 == 0,
                                               np.array(["a"] * 8, dtype=object), {"a": 0.1})
    card = {name: {"qini": 0.25, "auuc": 0.0} for name in ("uplift", "risk", "random")}
    result = UpliftResult(model, tmp_path / "u.zip", card, pd.DataFrame(), pd.DataFrame(), 8, 2, "by hash",
                          held_out_groups=(1, 1))
    assert ("held-out customers, ranked by:   Qini     AUUC\n  (too few to judge: contacted 1, control 1; a "
            "read-out needs 30 each: these figures are noise)\n  uplift ") in result.summary()
    enough = UpliftResult(model, tmp_path / "u.zip", card, pd.DataFrame(), pd.DataFrame(), 8, 60, "by hash",
                          held_out_groups=(30, 30))
    assert "too few to judge" not in enough.summary()


def test_an_uplift_model_of_other_actions_than_the_playbooks_is_named(caplog):
    """Campaigns of an action the playbook lacks: scoring chose no action by uplift and selected nobody, without a
    word; now it stops naming both lists, and a model with only some unknown actions is warned about."""
    from churnguard.config import load_playbook
    from churnguard.uplift.score import playbook_actions

    features = pd.DataFrame({"x": np.arange(8, dtype=float)})
    treated, bought = np.arange(8) % 2 == 0, np.arange(8) % 3 == 0
    playbook = load_playbook()
    other = UpliftModel().fit(features, treated, bought, np.array(["mystery"] * 8, dtype=object), {"mystery": 0.1})
    with pytest.raises(ValueError, match=r"^none of the uplift model's actions \(mystery\) is an action of the "
                                         r"playbook \(browsing_reminder, .*win_back_offer\): it would choose no "
                                         "action and select nobody"):
        playbook_actions(other, playbook)
    mixed = UpliftModel().fit(features, treated, bought, np.array(["mystery", "win_back_offer"] * 4, dtype=object),
                              {"mystery": 0.1, "win_back_offer": 0.1})
    with caplog.at_level("WARNING", logger="churnguard.uplift.score"):
        assert playbook_actions(mixed, playbook) == ["win_back_offer"]
    assert [r.getMessage() for r in caplog.records] == [
        "the uplift model's actions mystery are not in the playbook: they are never chosen"]
