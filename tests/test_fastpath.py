"""FastScorer against the batch path: same features, probabilities, reasons, actions, for demo and edge cases."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard import fastpath, scoring
from churnguard.config import DataConfig, load_playbook
from churnguard.dataset import validate_tables
from churnguard.features import build_features
from churnguard.scoring import OUTPUT_COLUMNS, score_tables
from churnguard.train import add_bgnbd_features

pytestmark = pytest.mark.slow

AS_OF_DAYS = ("2025-06-30", "2025-12-31")
TX_KEYS = ("timestamp", "amount", "order_id")
TK_KEYS = ("opened_at", "first_response_at", "resolved_at", "csat")


@pytest.fixture(scope="module")
def scorer(model):
    return fastpath.FastScorer(model, load_playbook())


def _plain(value):
    """A pandas cell as the server would hand it over: datetime, float, str, bool or None."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if isinstance(value, np.generic) else value


def _records(frame: pd.DataFrame, keys: tuple[str, ...]) -> dict[str, list[dict]]:
    cols = [k for k in keys if k in frame]
    return {cid: [{k: _plain(v) for k, v in r.items()} for r in g[cols].to_dict("records")]
            for cid, g in frame.groupby("customer_id", sort=False)}


def _inputs(transactions, tickets, customers) -> dict[str, tuple[list, list, dict]]:
    tx, tk = _records(transactions, TX_KEYS), _records(tickets, TK_KEYS)
    attrs = {r["customer_id"]: {k: _plain(v) for k, v in r.items() if k != "customer_id"}
             for r in customers.to_dict("records")}
    return {cid: (tx.get(cid, []), tk.get(cid, []), a) for cid, a in attrs.items()}


def _reference(model, tables, as_of):
    """The batch path's features (as score_tables builds them) and its scores, indexed by customer."""
    info = model.info
    feats = build_features(tables, as_of, info.config.features,
                           lifespan_years=info.population.lifespan_years, vip_threshold=info.population.vip_cltv_threshold)
    feats = add_bgnbd_features(feats, info.population.bgnbd, info.population.horizon_days)
    scores = score_tables(model, tables, as_of, load_playbook(), control_fraction=0.0).scores
    return feats.set_index("customer_id"), scores.set_index("customer_id")


def _same(expected, got) -> bool:
    if got is None or isinstance(got, str):
        return expected == got or (got is None and pd.isna(expected))
    if np.isnan(expected) or np.isnan(got):
        return bool(np.isnan(expected) and np.isnan(got))
    return math.isclose(expected, got, rel_tol=1e-9, abs_tol=1e-12)


def _check(scorer, inputs, feats, scores, as_of) -> None:
    day = date.fromisoformat(as_of)
    for cid, (tx, tk, attrs) in inputs.items():
        f = scorer.features(cid, tx, tk, attrs, day)
        s = scorer.score(cid, tx, tk, attrs, day)
        if cid not in feats.index:
            assert f is None, cid
            assert s is None, cid
            continue
        ref = feats.loc[cid].drop("as_of")
        assert set(f) == set(ref.index), (cid, set(f) ^ set(ref.index))
        bad = {k: (ref[k], f[k]) for k in ref.index if not _same(ref[k], f[k])}
        assert not bad, (as_of, cid, bad)
        row = scores.loc[cid]
        assert list(s) == OUTPUT_COLUMNS
        assert s["customer_id"] == cid
        assert s["as_of"] == row["as_of"].date()
        if np.isnan(row["churn_probability"]):
            assert s["churn_probability"] is None, cid
        else:
            assert s["churn_probability"] == pytest.approx(row["churn_probability"], rel=1e-9, abs=1e-12), cid
        for k in OUTPUT_COLUMNS[3:]:
            assert _same(row[k], s[k]) if isinstance(s[k], float) else row[k] == s[k], (as_of, cid, k, row[k], s[k])


@pytest.fixture(scope="module")
def demo_inputs(trained):
    demo = trained["demo"]
    ids = sorted(demo.customers["customer_id"])[::7][:200]  # spread over signup cohorts
    keep = {t: getattr(demo, t)[getattr(demo, t)["customer_id"].isin(ids)] for t in ("transactions", "tickets", "customers")}
    return _inputs(keep["transactions"], keep["tickets"], keep["customers"])


@pytest.mark.parametrize("as_of", AS_OF_DAYS)
def test_demo_customers_match_the_batch_path(trained, model, scorer, demo_inputs, as_of):
    feats, scores = _reference(model, trained["tables"], as_of)
    _check(scorer, demo_inputs, feats, scores, as_of)
    scored = [cid for cid in demo_inputs if cid in scores.index]
    assert len(scored) > 100
    assert (scores.loc[scored, "risk_band"] != "no_history").sum() > 50  # the model path is really exercised
    assert (scores.loc[scored, "reason_1"] != "").sum() > 50


def _edge_tables():
    """Hand-made customers around the cut-off 2025-06-30, as raw contract tables (text timestamps)."""
    tx = [
        ("multi", "2025-01-10 09:00", 30.0, "o1"), ("multi", "2025-01-10 18:00", 12.5, "o1"),  # one order, two lines
        ("multi", "2025-03-02 10:00", 40.0, None), ("multi", "2025-03-02 10:00", 5.0, None),  # no id: same instant
        ("multi", "2025-03-02 15:00", 7.0, None), ("multi", "2025-06-30 23:59", 20.0, "o3"),
        ("multi", "2025-05-01 12:00", -12.5, "r1"), ("multi", "2025-07-01 00:00", 99.0, "late"),
        ("refunds", "2025-02-01 10:00", -20.0, "r2"), ("refunds", "2025-03-01 10:00", -5.0, None),
        ("future", "2025-07-02 10:00", 50.0, "f1"), ("late", "2025-08-01 10:00", 50.0, "l1"),
        ("tz", "2025-06-30T20:30:00-05:00", 10.0, "t1"),  # 01:30 UTC on 07-01: after as_of
        ("tz", "2025-06-01T23:30:00-02:00", 25.0, "t2"), ("tz", "2024-12-31T23:00:00+01:00", 15.0, "t3"),
        ("tz", "2025-01-01T23:00:00+00:00", 4.0, "t4"),
        ("unanswered", "2024-11-11 11:00", 80.0, "u1"), ("unanswered", "2025-06-20 11:00", 60.0, "u2"),
        ("newcat", "2025-04-04 10:00", 35.0, "n1"), ("newcat", "2025-06-04 10:00", 36.0, "n2"),
    ]
    tk = [
        ("multi", "2025-06-01 08:00", "2025-06-02 09:00", "2025-06-03 08:00", 2.0),
        ("multi", "2025-06-01 08:00", "2025-06-01 09:00", "2025-06-01 12:00", 4.0),  # same opening: tie
        ("multi", "2025-06-29 08:00", "2025-07-02 08:00", "2025-07-03 08:00", 1.0),  # answered after as_of
        ("unanswered", "2025-06-10 10:00", None, None, None), ("unanswered", "2025-06-30 20:00", None, None, None),
        ("future", "2025-07-05 10:00", "2025-07-05 11:00", None, None),
        ("tz", "2025-06-29T22:00:00-06:00", "2025-06-30T20:00:00+02:00", "2025-07-01T01:00:00+00:00", 3.0),
        ("newcat", "2025-05-01 10:00", "2025-05-01 10:30", "2025-05-01 11:00", None),
    ]
    cu = [
        ("multi", "2024-12-01", "yes", 120.0, "9", "north"),
        ("refunds", "2025-01-15", "no", None, None, "south"),
        ("none", "2025-03-01", None, 0.0, "6", "east"),
        ("future", "2025-05-01", "no", 0.0, "8", "west"),
        ("late", "2025-07-15", "no", 0.0, None, "west"),
        ("tz", "2024-12-31T23:30:00-03:00", "true", 5.0, "10", "north"),
        ("unanswered", None, "false", 1.0, "0", "south"),
        ("newcat", "2025-04-01", "yes", 3.0, "7", "atlantis"),  # a region unseen in training
    ]
    return (pd.DataFrame(tx, columns=["customer_id", *TX_KEYS]),
            pd.DataFrame(tk, columns=["customer_id", *TK_KEYS]),
            pd.DataFrame(cu, columns=["customer_id", "signup_date", "loyalty_member", "loyalty_points", "nps", "region"]))


def _aware(text):
    """Text timestamps as the server would parse them: aware datetimes stay aware (the scorer converts)."""
    return None if text is None else datetime.fromisoformat(text)


# The batch path's ChurnModel.prepare warns (pandas 4 deprecation) when a category was unseen in training.
def test_edge_cases_match_the_batch_path(model, scorer):
    tx, tk, cu = _edge_tables()
    tables = validate_tables(tx, tk, cu, config=DataConfig())
    feats, scores = _reference(model, tables, "2025-06-30")
    inputs = {cid: ([{**t, "timestamp": _aware(t["timestamp"])} for t in txs],
                    [{k: (_aware(v) if k != "csat" else v) for k, v in t.items()} for t in tks], attrs)
              for cid, (txs, tks, attrs) in _inputs(tx, tk, cu).items()}
    _check(scorer, inputs, feats, scores, "2025-06-30")
    assert set(feats.index) == {"multi", "refunds", "none", "future", "tz", "unanswered", "newcat"}  # not "late"
    got = {cid: scorer.features(cid, *inputs[cid], date(2025, 6, 30)) for cid in feats.index}
    assert got["multi"]["n_orders"] == 4
    assert got["multi"]["csat_latest"] == 4.0  # two tickets opened together: the larger answer wins
    assert got["refunds"]["refund_count"] == 2
    assert got["refunds"]["n_orders"] == 0
    assert got["unanswered"]["slow_response_share"] == 0.5  # one waits 4 h at the cut-off, one for weeks
    assert math.isnan(got["unanswered"]["first_response_hours_max"])
    assert got["newcat"]["attr_region"] == "atlantis"
    assert scorer.score("none", *inputs["none"], date(2025, 6, 30))["risk_band"] == "no_history"


def test_inputs_in_other_shapes_give_the_same_score(scorer, demo_inputs):
    """Aware timestamps, text attributes and a datetime cut-off are read like the data contract reads them."""
    cid, (tx, tk, attrs) = next((c, v) for c, v in demo_inputs.items() if len(v[0]) > 5 and v[1])
    base = scorer.score(cid, tx, tk, attrs, date(2025, 12, 31))
    east = timezone(timedelta(hours=5))
    shifted_tx = [{**t, "timestamp": t["timestamp"].replace(tzinfo=UTC).astimezone(east)} for t in tx]
    text_attrs = {k: (str(v) if v is not None else "") for k, v in attrs.items()}
    text_attrs["loyalty_member"] = "yes" if attrs["loyalty_member"] else "no"
    other = scorer.score(cid, shifted_tx, tk, text_attrs, datetime(2025, 12, 31, 15, 0, tzinfo=UTC))
    assert other == base


def _frame_for_describe(trained, model):
    info = model.info
    feats = build_features(trained["tables"], "2025-12-31", info.config.features,
                           lifespan_years=info.population.lifespan_years, vip_threshold=info.population.vip_cltv_threshold)
    feats = add_bgnbd_features(feats, info.population.bgnbd, info.population.horizon_days)
    # Rounding ties and thresholds on top of the real rows: x.5 values, 1.5x overdue, 0.125 shares, NaN.
    ties = feats.head(8).copy()
    grid = [0.5, 1.5, 2.5, 0.125, 0.005, 1.45, -0.5, np.nan]
    for c in ties.columns:
        if pd.api.types.is_float_dtype(ties[c]):
            ties[c] = grid
    return pd.concat([feats, ties], ignore_index=True)


def test_reason_texts_match_scoring(trained, model, scorer):
    frame = _frame_for_describe(trained, model)
    rows = [{k: (None if isinstance(frame[k].dtype, pd.CategoricalDtype) and pd.isna(v) else v) for k, v in r.items()}
            for r in frame.to_dict("records")]
    for feature in [*model.feature_names_, "not_a_feature"]:
        expected = scoring._describe(feature, frame).tolist()
        got = [scorer.describe(feature, r) for r in rows]
        mismatch = [(e, g) for e, g in zip(expected, got, strict=True) if e != g]
        assert not mismatch, (feature, mismatch[:3])


def test_single_customer_requests_match_the_server_path(model, scorer, demo_inputs):
    """The server scores one request's tables; with every ticket column filled it agrees with the scorer."""
    picked = [c for c, (tx, tk, _) in demo_inputs.items()
              if len(tx) > 3 and tk and all(t["first_response_at"] and t["resolved_at"] for t in tk)][:5]
    assert picked
    for cid in picked:
        tx, tk, attrs = demo_inputs[cid]
        tables = validate_tables(pd.DataFrame([{"customer_id": cid, **t} for t in tx]),
                                 pd.DataFrame([{"customer_id": cid, **t} for t in tk]),
                                 pd.DataFrame([{"customer_id": cid, **attrs}]), config=DataConfig())
        row = score_tables(model, tables, "2025-12-31", load_playbook(), control_fraction=0.0).scores.iloc[0]
        s = scorer.score(cid, tx, tk, attrs, date(2025, 12, 31))
        assert s["churn_probability"] == pytest.approx(row["churn_probability"], rel=1e-9)
        assert [s[k] for k in OUTPUT_COLUMNS[3:]] == [row[k] for k in OUTPUT_COLUMNS[3:]]


def test_single_row_predictions_equal_booster_predict(model, scorer, demo_inputs, monkeypatch):
    """LightGBM's single-row C API gives exactly ``Booster.predict``'s numbers, and so does the fallback to
    ``Booster.predict`` used when a LightGBM build does not offer that API."""
    from lightgbm import basic

    feats = [scorer.features(cid, *v, date(2025, 12, 31)) for cid, v in demo_inputs.items()]
    rows = [scorer._row(f) for f in feats if f is not None and f["n_orders"] > 0][:30]
    assert len(rows) == 30
    booster, it = model.booster_, model.best_iteration_
    fast = {kind: fastpath._SingleRow(booster, kind, it) for kind in ("normal", "contrib")}
    assert all(p._config is not None for p in fast.values())  # this build has the API: the C path is tested
    lib = basic._LIB

    class WithoutSingleRowApi:
        def __getattr__(self, name):
            if "SingleRowFast" in name:
                raise AttributeError(name)
            return getattr(lib, name)

    with monkeypatch.context() as mp:
        mp.setattr(basic, "_LIB", WithoutSingleRowApi())
        fallback = {kind: fastpath._SingleRow(booster, kind, it) for kind in ("normal", "contrib")}
    assert all(p._config is None for p in fallback.values())
    for row in rows:
        expected = {"normal": booster.predict(row[None], num_iteration=it),
                    "contrib": booster.predict(row[None], num_iteration=it, pred_contrib=True)[0]}
        for kind in ("normal", "contrib"):
            assert np.array_equal(fast[kind](row), expected[kind])
            assert np.array_equal(fallback[kind](row), expected[kind])


def test_the_lightgbm_calls_score_alike(model, scorer, demo_inputs, monkeypatch):
    """The demo model's TreeSHAP and probability come from ``churnguard._treeshap`` (so the tests above check
    it against the batch path); a model it does not tabulate goes through LightGBM's single-row calls, with
    the same rows."""
    assert scorer._shap is not None

    def refuse(booster, num_iteration):
        raise ValueError("not tabulated")

    monkeypatch.setattr(fastpath, "TreeShap", refuse)
    plain = fastpath.FastScorer(model, load_playbook())
    assert plain._shap is None
    day = date(2025, 12, 31)
    rows = [(plain.score(cid, *v, day), scorer.score(cid, *v, day)) for cid, v in demo_inputs.items()]
    assert sum(a is not None and a["churn_probability"] is not None for a, _ in rows) > 100
    assert all(a == b for a, b in rows)


@settings(max_examples=500, deadline=None)
@given(value=st.floats(allow_nan=False) | st.integers(-10**7, 10**7).map(lambda k: k / 8),  # x.125 .. x.875
       digits=st.integers(0, 3))
def test_reason_numbers_round_as_numpy(value, digits):
    """Halves go to even, -0 keeps its sign and huge values overflow to inf, as with ``np.round``, which
    ``scoring`` uses on whole columns."""
    with np.errstate(over="ignore"):
        expected = f"{np.float64(value).round(digits):.{digits}f}", f"{np.float64(value * 100).round():.0f}%"
    assert (fastpath._n(value, digits), fastpath._pct(value)) == expected
