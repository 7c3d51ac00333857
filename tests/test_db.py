"""Tables in a database: a real PostgreSQL server (``pg_server``, started for the session) and DuckDB files. The
demo tables are loaded into the database, scored from there into a table, and compared with the file path."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.demo import write_demo_data
from churnguard.sources import DatabaseError, DbSource, parse_source, read_source, write_tables

runner = CliRunner()
TABLES = ("transactions", "tickets", "customers")


def _said(output: str) -> str:
    return " ".join(output.replace("\u2502", " ").split())


# --- URLs -------------------------------------------------------------------------------------------------------

def test_parse_postgres_url_keeps_libpq_keys_and_drops_ours():
    src = parse_source("postgresql://ana@db.example:5433/shop?sslmode=require&table=sales.orders")
    assert src == DbSource("postgresql", "postgresql://ana@db.example:5433/shop?sslmode=require", "sales.orders")
    assert str(src) == "postgresql://ana@db.example:5433/shop?sslmode=require&table=sales.orders"


def test_parse_query_url_is_decoded():
    src = parse_source("postgres://ana@h/shop?query=SELECT%20a%2C%20b%20FROM%20t%20WHERE%20x%20%3D%201")
    assert (src.kind, src.table, src.query) == ("postgresql", None, "SELECT a, b FROM t WHERE x = 1")


def test_parse_duckdb_url():
    assert parse_source("duckdb:///data/shop.duckdb?table=orders") == DbSource("duckdb", "/data/shop.duckdb", "orders")


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://ana:hunter2@h/shop?table=t", "holds a password"),
    ("postgresql://ana@h/shop", "name one table"),
    ("postgresql://ana@h/shop?table=t&query=SELECT%201", "name one table"),
    ("duckdb://?table=t", "no DuckDB file"),
])
def test_bad_urls_are_refused_with_the_reason(url, message):
    with pytest.raises(DatabaseError, match=message) as err:
        parse_source(url)
    assert "hunter2" not in str(err.value)


# --- PostgreSQL -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_db(pg_server, trained, tmp_path_factory):
    """The session's demo tables as CSV files and in PostgreSQL (typed columns) and a DuckDB file."""
    tmp = tmp_path_factory.mktemp("db")
    demo = trained["demo"]
    files = write_demo_data(demo, tmp / "files")
    pg = parse_source(pg_server.url(table="transactions"))
    duck = DbSource("duckdb", str(tmp / "shop.duckdb"), "transactions")
    for dest in (pg, duck):
        write_tables(dest, {t: getattr(demo, t) for t in TABLES})
    return {"files": files, "pg": pg, "duck": duck, "tmp": tmp, "model": trained["result"].model_path}


def _score_args(model, inputs: dict, out: str) -> list[str]:
    return ["score", "--model", str(model), "--transactions", inputs["transactions"], "--tickets",
            inputs["tickets"], "--customers", inputs["customers"], "--out", out, "--as-of", "2025-12-31"]


def _urls(src: DbSource) -> dict[str, str]:
    return {t: str(src.with_table(t)) for t in TABLES}


@pytest.fixture(scope="module")
def file_scores(demo_db):
    out = demo_db["tmp"] / "scores.parquet"
    result = runner.invoke(app, _score_args(demo_db["model"], {t: str(p) for t, p in demo_db["files"].items()},
                                            str(out)))
    assert result.exit_code == 0, result.output
    return pd.read_parquet(out)


def _same_scores(from_db: pd.DataFrame, from_files: pd.DataFrame) -> None:
    """The scores of a table equal the file path's, value for value (as_of comes back as a date)."""
    got = from_db.sort_values("customer_id").reset_index(drop=True)
    want = from_files.sort_values("customer_id").reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    got["as_of"] = pd.to_datetime(got["as_of"]).astype(want["as_of"].dtype)
    for column in want.columns:
        if pd.api.types.is_numeric_dtype(want[column]) and not pd.api.types.is_bool_dtype(want[column]):
            assert got[column].astype("float64").equals(want[column].astype("float64")), column
        else:
            assert got[column].astype("str").tolist() == want[column].astype("str").tolist(), column


@pytest.mark.parametrize("db", ["pg", "duck"])
def test_score_from_tables_into_a_table_equals_the_file_path(demo_db, file_scores, db):
    src = demo_db[db]
    out = src.with_table("churn_scores")
    result = runner.invoke(app, _score_args(demo_db["model"], _urls(src), str(out)))
    assert result.exit_code == 0, result.output
    assert f"-> {out}" in _said(result.output)
    scores = read_source(out)
    rejects = read_source(out.with_table("churn_scores_rejects"))
    _same_scores(scores, file_scores)
    customers = demo_db["files"]["customers"]
    known = set(pd.read_csv(customers, dtype=str)["customer_id"]) | set(
        pd.read_csv(demo_db["files"]["transactions"], dtype=str)["customer_id"])
    assert len(scores) + rejects["customer_id"].nunique() == len(known)
    assert set(scores["customer_id"]).isdisjoint(rejects["customer_id"])


def test_score_table_has_sql_types_and_append_adds_a_run(demo_db, file_scores):
    import adbc_driver_postgresql.dbapi as pg

    out = demo_db["pg"].with_table("typed_scores")
    args = _score_args(demo_db["model"], _urls(demo_db["pg"]), str(out))
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, [*args, "--if-exists", "append"]).exit_code == 0
    assert len(read_source(out)) == 2 * len(file_scores)
    with pg.connect(out.target) as conn, conn.cursor() as cur:
        cur.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = "
                    "'typed_scores'")
        types = dict(cur.fetchall())
    assert types["as_of"] == "date"
    assert types["churn_probability"] == "double precision"
    assert types["selected"] == "boolean"
    assert types["customer_id"] == types["model_version"] == "text"


def test_failed_write_leaves_the_previous_tables(demo_db):
    dest = demo_db["pg"].with_table("kept")
    write_tables(dest, {"kept": pd.DataFrame({"x": [1, 2, 3]}), "kept_rejects": pd.DataFrame({"y": ["a"]})})
    # the second table cannot be written (a column of mappings has no SQL type): nothing of the run is kept
    with pytest.raises(DatabaseError, match="cannot write"):
        write_tables(dest, {"kept": pd.DataFrame({"x": [9]}), "kept_rejects": pd.DataFrame({"y": [{"a": 1}]})})
    assert read_source(dest)["x"].tolist() == [1, 2, 3]
    assert read_source(dest.with_table("kept_rejects"))["y"].tolist() == ["a"]


def test_replace_drops_a_table_the_run_does_not_write(demo_db):
    dest = demo_db["duck"].with_table("runs")
    write_tables(dest, {"runs": pd.DataFrame({"x": [1]}), "runs_drift": pd.DataFrame({"psi": [0.3]})})
    write_tables(dest, {"runs": pd.DataFrame({"x": [2]}), "runs_drift": None}, if_exists="append")
    assert read_source(dest.with_table("runs_drift"))["psi"].tolist() == [0.3]  # append: left as it was
    write_tables(dest, {"runs": pd.DataFrame({"x": [3]}), "runs_drift": None})
    assert read_source(dest)["x"].tolist() == [3]
    with pytest.raises(DatabaseError, match="cannot read table runs_drift"):
        read_source(dest.with_table("runs_drift"))


@pytest.mark.parametrize("db", ["pg", "duck"])
def test_a_run_without_drift_rows_leaves_no_drift_table_of_the_last_run(demo_db, db):
    out = demo_db[db].with_table("nightly")
    args = _score_args(demo_db["model"], _urls(demo_db[db]), str(out))
    assert runner.invoke(app, args).exit_code == 0
    assert len(read_source(out.with_table("nightly_drift"))) > 0
    # the purchases of more than a year before as_of only: no customer bought within the lookback (365 days), so
    # no drift sample, so no drift table
    tx = read_source(demo_db[db].with_table("transactions"))
    old = demo_db[db].with_table("old_transactions")
    write_tables(old, {"old_transactions": tx[pd.to_datetime(tx["timestamp"], utc=True)
                                              < pd.Timestamp("2024-12-01", tz="UTC")]})
    result = runner.invoke(app, _score_args(demo_db["model"], {**_urls(demo_db[db]), "transactions": str(old)},
                                            str(out)))
    assert result.exit_code == 0, result.output
    assert set(pd.to_datetime(read_source(out)["as_of"])) == {pd.Timestamp("2025-12-31")}
    with pytest.raises(DatabaseError, match="cannot read table nightly_drift"):
        read_source(out.with_table("nightly_drift"))


def test_a_bad_value_is_reported_with_the_table_column_and_count(demo_db):
    tx = pd.read_csv(demo_db["files"]["transactions"], dtype=str).head(200)
    tx.loc[[3, 7], "amount"] = "twelve"
    src = demo_db["pg"].with_table("bad_tx")
    write_tables(src, {"bad_tx": tx})
    result = runner.invoke(app, ["features", "--transactions", str(src), "--as-of", "2025-12-31", "--out",
                                 str(demo_db["tmp"] / "f.parquet")])
    said = _said(result.output)
    assert result.exit_code == 2, result.output
    assert f"{src}: 2 of 200 transactions row(s) cannot be used" in said
    assert "column 'amount': 2 row(s) are not numeric, e.g. 'twelve'" in said
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_wrong_password_and_unknown_table_are_clear_errors(demo_db, monkeypatch):
    args = ["features", "--as-of", "2025-12-31", "--out", str(demo_db["tmp"] / "f.parquet"), "--transactions"]
    missing = demo_db["pg"].with_table("no_such_table")
    result = runner.invoke(app, [*args, str(missing)])
    assert result.exit_code == 2
    assert f"{missing}: cannot read table no_such_table" in _said(result.output)
    assert "Traceback" not in result.output
    monkeypatch.setenv("PGPASSWORD", "wrong")
    result = runner.invoke(app, [*args, str(demo_db["pg"])])
    assert result.exit_code == 2
    assert "cannot connect" in result.output
    assert "password authentication failed" in _said(result.output)
    assert "Traceback" not in result.output


def test_features_and_report_read_tables(demo_db):
    out = demo_db["tmp"] / "feats.parquet"
    urls = _urls(demo_db["duck"])
    result = runner.invoke(app, ["features", "--transactions", urls["transactions"], "--customers",
                                 urls["customers"], "--as-of", "2025-06-30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ref = demo_db["tmp"] / "feats_files.parquet"
    files = demo_db["files"]
    runner.invoke(app, ["features", "--transactions", str(files["transactions"]), "--customers",
                        str(files["customers"]), "--as-of", "2025-06-30", "--out", str(ref)])
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref))
    result = runner.invoke(app, ["report", "--transactions", urls["transactions"], "--out",
                                 str(demo_db["tmp"] / "report")])
    assert result.exit_code == 0, result.output
    assert (demo_db["tmp"] / "report" / "report.html").is_file()


def test_features_into_a_table_equal_the_file_and_append_adds_a_run(demo_db):
    files, pg = demo_db["files"], demo_db["pg"]
    ref = demo_db["tmp"] / "feats_ref.parquet"
    base = ["features", "--as-of", "2025-06-30"]
    assert runner.invoke(app, [*base, "-t", str(files["transactions"]), "-o", str(ref)]).exit_code == 0
    out = pg.with_table("features_0630")
    args = [*base, "-t", str(pg.with_table("transactions")), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"-> {out}" in _said(result.output)
    want = pd.read_parquet(ref)
    got = read_source(out).sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want.sort_values("customer_id").reset_index(drop=True), check_dtype=False)
    # the customers first seen after as_of are reported as the file path reports them
    file_rejects = pd.read_csv(ref.with_name(ref.stem + ".rejects.csv"), dtype={"customer_id": str})
    table_rejects = read_source(out.with_table("features_0630_rejects"))
    assert not table_rejects.empty
    assert sorted(zip(table_rejects["customer_id"], table_rejects["reason"], strict=True)) == sorted(
        zip(file_rejects["customer_id"], file_rejects["reason"], strict=True))
    assert runner.invoke(app, [*args, "--if-exists", "append"]).exit_code == 0
    assert len(read_source(out)) == 2 * len(want)
    result = runner.invoke(app, [*args, "--rejects", str(demo_db["tmp"] / "r.csv")])
    assert result.exit_code == 2
    assert "with a database --out the rejects go to features_0630_rejects" in _said(result.output)


@pytest.mark.parametrize("db", ["pg", "duck"])
def test_campaign_readout_reads_scores_and_transactions_from_tables(demo_db, db):
    tmp, src = demo_db["tmp"], demo_db[db]
    files = {t: str(p) for t, p in demo_db["files"].items()}
    past = [*_score_args(demo_db["model"], files, str(tmp / "past.parquet"))[:-1], "2025-06-30", "--budget", "500"]
    assert runner.invoke(app, past).exit_code == 0
    table = src.with_table("past_scores")
    write_tables(table, {"past_scores": pd.read_parquet(tmp / "past.parquet")})
    readout = ["campaign-readout", "-o"]
    result = runner.invoke(app, [*readout, str(tmp / "ro_files.csv"), "-s", str(tmp / "past.parquet"), "-t",
                                 files["transactions"]])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*readout, str(tmp / f"ro_{db}.csv"), "-s", str(table), "-t",
                                 str(src.with_table("transactions"))])
    assert result.exit_code == 0, result.output
    want = pd.read_csv(tmp / "ro_files.csv")
    assert want.loc[want["action"] == "(all)", "n_contacted"].iloc[0] > 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp / f"ro_{db}.csv"), want)


def test_query_url_reads_its_rows(demo_db):
    src = demo_db["pg"]
    query = parse_source(f"{src.target}?query=SELECT%20customer_id%2C%20amount%20FROM%20transactions%20LIMIT%205")
    assert list(read_source(query).columns) == ["customer_id", "amount"]
    assert len(read_source(query)) == 5


@pytest.mark.parametrize("db", ["pg", "duck"])
def test_parts_split_a_table_by_customer_in_the_database(demo_db, db):
    from churnguard.sources import read_part

    src = demo_db[db].with_table("parts_tx")
    tx = pd.DataFrame({"customer_id": [f"c{i % 40}" for i in range(200)] + [None], "amount": range(201)})
    write_tables(src, {"parts_tx": tx})
    parts = [read_part(src, ["customer_id", "amount"], "customer_id", i, 3).to_pandas() for i in range(3)]
    assert sorted(pd.concat(parts)["amount"]) == list(range(201))  # every row once, the row without an id too
    assert sum(p["customer_id"].isna().sum() for p in parts) == 1
    ids = [set(p["customer_id"].dropna()) for p in parts]
    assert all(0 < len(i) < 40 for i in ids)  # no part reads every customer
    assert sum(map(len, ids)) == 40  # no customer in two parts


@pytest.fixture(scope="module")
def cluster(demo_db):
    """A real LocalCluster of 2 worker processes, started with PGPASSWORD set (the workers read the tables)."""
    from tests.dask_cluster import local_cluster

    with local_cluster() as c:
        yield c


def test_dask_engine_scores_from_postgresql_equal_the_local_engine_from_files(demo_db, file_scores, cluster):
    out = demo_db["tmp"] / "dask_pg.parquet"
    args = _score_args(demo_db["model"], _urls(demo_db["pg"]), str(out))
    result = runner.invoke(app, [*args, "--engine", "dask", "--scheduler", cluster.scheduler_address])
    assert result.exit_code == 0, result.output
    assert "in 2 customer partitions" in _said(result.output)
    _same_scores(pd.read_parquet(out), file_scores)


def test_dask_engine_features_from_duckdb_equal_the_files(demo_db, cluster):
    files, urls, tmp = demo_db["files"], _urls(demo_db["duck"]), demo_db["tmp"]
    base = ["features", "--as-of", "2025-06-30"]
    assert runner.invoke(app, [*base, "-t", str(files["transactions"]), "--customers", str(files["customers"]),
                               "-o", str(tmp / "f_files.parquet")]).exit_code == 0
    result = runner.invoke(app, [*base, "-t", urls["transactions"], "--customers", urls["customers"], "-o",
                                 str(tmp / "f_dask.parquet"), "--engine", "dask", "--scheduler",
                                 cluster.scheduler_address])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp / "f_dask.parquet"), pd.read_parquet(tmp / "f_files.parquet"))


@pytest.mark.parametrize("db", ["pg", "duck"])
def test_local_engine_partitions_of_a_table_score_as_the_files(demo_db, file_scores, db):
    out = demo_db["tmp"] / f"parts_{db}.parquet"
    result = runner.invoke(app, [*_score_args(demo_db["model"], _urls(demo_db[db]), str(out)), "--partitions", "3"])
    assert result.exit_code == 0, result.output
    _same_scores(pd.read_parquet(out), file_scores)


def test_missing_duckdb_file_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["features", "--transactions", f"duckdb://{tmp_path}/none.duckdb?table=t",
                                 "--as-of", "2025-12-31", "--out", str(tmp_path / "f.parquet")])
    assert result.exit_code == 2
    assert f"DuckDB file {tmp_path}/none.duckdb not found" in _said(result.output)


# --- data.database and data.tables -------------------------------------------------------------------------------

@pytest.fixture
def tiny_duckdb(tmp_path, monkeypatch):
    """The tiny tables in a DuckDB file (as text, as a CSV export would hold them), named by the environment."""
    from tests.conftest import tiny_raw

    pytest.importorskip("duckdb")
    raw = tiny_raw()
    path = tmp_path / "shop.duckdb"
    write_tables(DbSource("duckdb", str(path), "orders"), {"orders": raw["transactions"], "crm": raw["customers"]})
    monkeypatch.setenv("CHURNGUARD_DATABASE_URL", f"duckdb://{path}")
    return path


def test_config_names_the_tables_of_the_database(tiny_duckdb, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  tables: {transactions: orders}\n")
    out = tmp_path / "f.parquet"
    # transactions from data.tables, customers by a bare table name, both in $CHURNGUARD_DATABASE_URL
    result = runner.invoke(app, ["features", "-c", str(cfg), "--customers", "crm", "--as-of", "2024-01-31",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)["customer_id"].tolist() == ["a", "b", "c", "d"]


def test_a_table_name_without_a_database_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CHURNGUARD_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["features", "--transactions", "orders", "--as-of", "2024-01-31", "--out",
                                 str(tmp_path / "f.parquet")])
    assert result.exit_code == 2
    assert "the transactions table 'orders' is in no database: set data.database or CHURNGUARD_DATABASE_URL" \
        in _said(result.output)


def test_a_password_in_the_configured_database_is_refused(tmp_path):
    from churnguard.config import ConfigError, load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  database: postgresql://ana:hunter2@db/shop\n")
    with pytest.raises(ConfigError, match=r"data\.database.*holds a password") as err:
        load_config(cfg)
    assert "hunter2" not in str(err.value)


def test_a_run_killed_mid_write_leaves_the_previous_tables(demo_db):
    """SIGKILL while the new rows stream in (a COPY of this process is running on the server): the transaction
    dies with the process, the previous table stays and no staged table is left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import adbc_driver_postgresql.dbapi as pg

    dest = demo_db["pg"].with_table("killed")
    write_tables(dest, {"killed": pd.DataFrame({"x": [1, 2, 3]})})
    code = ("import pandas as pd, numpy as np; from churnguard.sources import parse_source, write_tables; "
            f"write_tables(parse_source({str(dest)!r}), {{'killed': pd.DataFrame({{'x': np.arange(20_000_000)}})}})")
    child = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    try:
        with pg.connect(dest.target, autocommit=True) as conn, conn.cursor() as cur:
            deadline, copying = time.monotonic() + 60, 0
            while not copying and time.monotonic() < deadline and child.poll() is None:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%'")
                copying = cur.fetchone()[0]
            assert copying, "the write was never seen in progress"
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            time.sleep(0.5)  # the server notices the closed connection and rolls back
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'killed%'")
            assert [r[0] for r in cur.fetchall()] == ["killed"]
    finally:
        child.kill()
        child.wait()
    assert read_source(dest)["x"].tolist() == [1, 2, 3]


# --- train and evaluate from tables ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_db(pg_server, tmp_path_factory):
    """A small world (400 customers) as CSV files, in PostgreSQL and in a DuckDB file, and a config with few
    snapshots, so each training below is quick."""
    from churnguard.demo import generate_demo_data

    tmp = tmp_path_factory.mktemp("small")
    demo = generate_demo_data(400, seed=11)
    names = {t: f"small_{t}" for t in TABLES}
    pg = parse_source(pg_server.url(table="small_transactions"))
    duck = DbSource("duckdb", str(tmp / "small.duckdb"), "small_transactions")
    for dest in (pg, duck):
        write_tables(dest, {names[t]: getattr(demo, t) for t in TABLES})
    config = tmp / "small.yaml"
    config.write_text("snapshots:\n  max_snapshots: 4\n")
    urls = {db: {t: str(src.with_table(names[t])) for t in TABLES} for db, src in (("pg", pg), ("duck", duck))}
    return {"files": write_demo_data(demo, tmp / "files"), **urls, "tmp": tmp, "config": config}


def _train(small_db, inputs: dict, name: str):
    out = small_db["tmp"] / f"{name}.zip"
    args = ["train", "-c", str(small_db["config"]), "--model-out", str(out), "--as-of", "2025-06-30",
            "--tracking-uri", f"sqlite:///{small_db['tmp'] / name}.db"]
    for table, value in inputs.items():
        args += [f"--{table}", str(value)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def file_model(small_db):
    return _train(small_db, small_db["files"], "files")


@pytest.mark.slow
@pytest.mark.parametrize("db", ["pg", "duck"])
def test_train_from_tables_learns_the_file_paths_model(small_db, file_model, db):
    from churnguard.model import ChurnModel

    got = ChurnModel.load(_train(small_db, small_db[db], db)).require_info()
    want = ChurnModel.load(file_model).require_info()
    assert got.data_fingerprint == want.data_fingerprint
    assert got.population == want.population
    assert got.scorecards == want.scorecards
    assert got.summary["transactions"] == want.summary["transactions"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("db", ["pg", "duck"])
def test_evaluate_from_tables_prints_the_file_paths_scorecard(small_db, file_model, db):
    def evaluate(inputs: dict) -> str:
        args = ["evaluate", "--model", str(file_model), "--as-of", "2025-09-01", "--no-log"]
        for table, value in inputs.items():
            args += [f"--{table}", str(value)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        return result.output

    from_files = evaluate(small_db["files"])
    assert "Scorecard as of 2025-09-01" in from_files
    assert "roc_auc" in from_files
    assert evaluate(small_db[db]) == from_files


@pytest.mark.slow
@pytest.mark.parametrize("db", ["pg", "duck"])
def test_train_uplift_reads_the_campaigns_from_a_table(small_db, db):
    from churnguard.demo import generate_demo_data

    demo = generate_demo_data(600, seed=11, campaign=True)
    files = write_demo_data(demo, small_db["tmp"] / f"uplift_{db}")
    src = parse_source(small_db[db]["transactions"]).with_table("uplift_transactions")
    write_tables(src, {"uplift_transactions": demo.transactions, "uplift_campaigns": demo.campaigns})

    def train(transactions: str, campaigns: str, name: str) -> str:
        result = runner.invoke(app, [
            "train-uplift", "--campaigns", campaigns, "-t", transactions, "--min-customers", "20",
            "-o", str(small_db["tmp"] / f"uplift_{name}.zip"),
            "--tracking-uri", f"sqlite:///{small_db['tmp'] / 'uplift'}_{name}.db"])
        assert result.exit_code == 0, result.output
        said = result.output.split("model ->")[0]
        return said[said.index("learned from"):]  # MLflow may log its store's creation first, with a time

    from_files = train(str(files["transactions"]), str(files["campaigns"]), f"files_{db}")
    assert train(str(src), str(src.with_table("uplift_campaigns")), db) == from_files
