"""Line-item exports in the shape of the public "Online Retail" data set: amount from quantity and unit price,
rows left out by ``data.exclude``, Latin-1 and semicolon files, and the demo export trained and scored through
the command line with only its config file."""

from __future__ import annotations

import logging
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.config import DataConfig, load_config
from churnguard.dataset import DataError, exclusion_note, load_tables, validate_tables
from churnguard.demo import generate_online_retail, write_online_retail

COLUMNS = {"transactions": {"customer_id": "CustomerID", "timestamp": "InvoiceDate", "order_id": "InvoiceNo",
                            "quantity": "Quantity", "unit_price": "UnitPrice"}}
EXPORT = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART,6,12/1/2010 8:26,2.55,17850.0,United Kingdom
536365,POST,POSTAGE,1,12/1/2010 8:26,18,17850.0,United Kingdom
536366,22633,HAND WARMER,6,12/13/2010 8:28,1.85,,United Kingdom
C536379,22633,HAND WARMER,-2,12/14/2010 9:41,1.85,17850.0,United Kingdom
C536379,D,Discount,-1,12/14/2010 9:41,27.50,17850.0,United Kingdom
"""


def _config(**extra) -> DataConfig:
    return DataConfig(columns=COLUMNS, **extra)


def test_amount_is_quantity_times_unit_price_and_excluded_rows_are_counted(tmp_path, caplog):
    path = tmp_path / "export.csv"
    path.write_text(EXPORT)
    cfg = _config(exclude={"transactions": {"StockCode": ["POST", "D"], "CustomerID": [""]}})
    with caplog.at_level(logging.WARNING, logger="churnguard.dataset"):
        tx = load_tables(path, config=cfg).transactions
    # 6 x 2.55 = 15.30; the cancellation -2 x 1.85 = -3.70 is a refund; 17850.0 is the id 17850
    assert tx["amount"].round(2).tolist() == [15.30, -3.70]
    assert tx["customer_id"].tolist() == ["17850", "17850"]
    assert tx["order_id"].tolist() == ["536365", "C536379"]
    assert (f"{path}: left out 3 of 5 transactions rows by data.exclude (StockCode = 'POST': 1, "
            "StockCode = 'D': 1, CustomerID empty: 1)") in caplog.text


def test_rows_after_excluded_ones_keep_their_row_number_in_rejects():
    raw = pd.DataFrame({"customer_id": ["a", "a", "b"], "timestamp": ["2024-01-01", "2024-01-02", "bad"],
                        "amount": ["5", "1", "3"], "code": ["X", "POST", "X"]})
    cfg = DataConfig(on_bad_rows="reject", exclude={"transactions": {"code": ["POST"]}})
    tables = validate_tables(raw, config=cfg)
    assert tables.rejects[["row", "reason"]].to_numpy().tolist() == [[3, "have an unparseable date"]]
    assert tables.transactions["amount"].tolist() == [5.0]


def test_exclusion_note_reads_as_a_sentence():
    assert exclusion_note("x.csv", "transactions", 1200, {"StockCode = 'POST'": 1000, "CustomerID empty": 12}) == (
        "x.csv: left out 1,012 of 1,200 transactions rows by data.exclude (StockCode = 'POST': 1,000, "
        "CustomerID empty: 12)")


def test_unknown_exclude_column_is_named(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(EXPORT)
    with pytest.raises(DataError, match=r"column 'Stockcode' \(in data.exclude.transactions\) not found"):
        load_tables(path, config=_config(exclude={"transactions": {"Stockcode": ["POST"]}}))


def test_a_line_without_quantity_or_price_is_a_bad_row():
    raw = pd.DataFrame({"customer_id": ["a", "a"], "timestamp": ["2024-01-01", "2024-01-02"],
                        "quantity": ["2", None], "unit_price": ["1.5", "3"]})
    with pytest.raises(DataError, match=r"column 'quantity': 1 row\(s\) are empty \(amount = quantity x unit_price\)"):
        validate_tables(raw, config=DataConfig())


def test_without_amount_or_price_the_error_names_both_ways(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("customer_id,timestamp,quantity\na,2024-01-01,2\n")
    with pytest.raises(DataError, match=r"'amount' not found in 1 row \(an amount can also be 'quantity' x 'unit_price'\)"):
        load_tables(path, config=DataConfig())


def test_latin1_file_needs_data_encoding_and_reads_with_it(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(EXPORT.replace("WHITE HANGING HEART", "CRÈME BRÛLÉE SET").encode("latin-1"))
    with pytest.raises(DataError, match=r"not utf-8 text .*set data.encoding"):
        load_tables(path, config=_config())
    cfg = _config(encoding="latin-1", exclude={"transactions": {"CustomerID": [""]}})
    assert load_tables(path, config=cfg).transactions["Description"].iloc[0] == "CRÈME BRÛLÉE SET"


@pytest.mark.parametrize(("sep", "shown"), [(";", "';'"), ("\t", '"\\t"')])
def test_a_file_with_another_separator_gets_a_hint_and_reads_with_data_delimiter(tmp_path, sep, shown):
    path = tmp_path / "t.csv"
    path.write_text(sep.join(["customer_id", "timestamp", "amount"]) + "\n" + sep.join(["a", "2024-01-01", "5"]))
    with pytest.raises(DataError, match=re.escape(f"looks separated by {shown}, not by ','; set data.delimiter: {shown}")):
        load_tables(path, config=DataConfig())
    assert load_tables(path, config=DataConfig(delimiter=sep)).transactions["amount"].tolist() == [5.0]


def test_a_comma_separated_file_read_with_another_delimiter_gets_the_hint(tmp_path):
    """data.delimiter applies to every CSV file: a comma-separated tickets file beside semicolon-separated
    transactions is one column whose name holds commas, and the error says so (it used to advise mapping the
    column names)."""
    path = tmp_path / "t.csv"
    path.write_text("customer_id,timestamp,amount\na,2024-01-01,5\n")
    with pytest.raises(DataError, match=re.escape(
            "looks separated by ',', not by ';'; set data.delimiter: ',' in the config (it applies to every CSV file "
            "the command reads)")):
        load_tables(path, config=DataConfig(delimiter=";"))


def test_exclude_values_are_text_in_the_config():
    cfg = load_config().data.model_validate({"exclude": {"transactions": {"StockCode": [85123, "POST", None]}}})
    assert cfg.exclude.transactions == {"StockCode": ("85123", "POST", "")}


def test_the_online_retail_demo_trains_and_scores_with_only_its_config(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    made = runner.invoke(app, ["demo-data", "--shape", "online-retail", "-n", "200", "-o", "data"])
    assert made.exit_code == 0, made.output
    export, config = "data/online_retail.csv", "data/online_retail.yaml"
    assert pd.read_csv(export, encoding="latin-1", dtype=str)["InvoiceNo"].str.startswith("C").any()
    trained = runner.invoke(app, ["train", "-t", export, "-c", config, "-o", "m.zip",
                                  "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}"])
    assert trained.exit_code == 0, trained.output
    runs = {}
    for name, extra in (("whole", []), ("parts", ["--partitions", "3"])):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="churnguard"):
            scored = runner.invoke(app, ["score", "-t", export, "-c", config, "-m", "m.zip", "-o", f"{name}.csv",
                                         "--as-of", "2011-12-09", *extra])
        assert scored.exit_code == 0, scored.output
        readout = " ".join(scored.output.split())  # the read-out it suggests reads the export with the config
        assert f"churnguard campaign-readout --scores {name}.csv \\ --transactions {export}" in readout, readout
        assert f"-c {config}" in readout.split("campaign-readout", 1)[1]
        notes = [r.getMessage() for r in caplog.records if "by data.exclude" in r.getMessage()]
        assert len(notes) == 1, notes
        assert "StockCode = 'POST'" in notes[0]
        assert "CustomerID empty" in notes[0]
        runs[name] = (notes[0], pd.read_csv(tmp_path / f"{name}.csv", dtype={"customer_id": str}))
    assert runs["whole"][0] == runs["parts"][0]  # the partitioned engine counts the whole file's rows too
    scores = runs["whole"][1]
    assert scores["customer_id"].str.fullmatch(r"\d{5}").all()  # 12346.0 -> 12346
    assert scores["churn_probability"].between(0, 1).any()
    parts = runs["parts"][1].sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(scores.sort_values("customer_id", ignore_index=True), parts)


def test_online_retail_export_has_the_public_shape():
    export = generate_online_retail(40, seed=1)
    assert list(export.columns) == ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                                    "UnitPrice", "CustomerID", "Country"]
    cancelled = export["InvoiceNo"].str.startswith("C")
    assert (export.loc[cancelled, "Quantity"].astype(int) < 0).all()
    assert (export.loc[~cancelled, "Quantity"].astype(int) > 0).all()
    assert export["InvoiceDate"].str.fullmatch(r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}").all()
    assert export["CustomerID"].str.fullmatch(r"(\d{5}\.0)?").all()
    assert (export["CustomerID"] == "").any()
    assert (export["StockCode"] == "POST").any()


def test_write_online_retail_writes_latin1_and_a_loadable_config(tmp_path):
    paths = write_online_retail(generate_online_retail(20, seed=2), tmp_path)
    cfg = load_config(paths["config"])
    assert cfg.data.encoding == "latin-1"
    assert "POST" in cfg.data.exclude.transactions["StockCode"]
    assert "CRÈME" in paths["export"].read_bytes().decode("latin-1")


def test_missing_tables_note_names_only_the_tables_the_model_used():
    from churnguard.dataset import missing_tables_note

    purchases_only = ["recency_days", "n_orders"]
    assert missing_tables_note(purchases_only, {}) is None
    with_tickets = [*purchases_only, "tickets_total", "csat_mean"]
    assert missing_tables_note(with_tickets, {"tickets": True}) is None
    note = missing_tables_note([*purchases_only, "attr_region"], {"tickets": False, "customers": False})
    assert note.startswith("warning: this model was trained with customers but is scored without: every "
                           "customer's attributes (loyalty")
    assert note.endswith("Give --customers FILE to score as trained.")
    engaged = missing_tables_note([*purchases_only, "days_since_last_visit"], {"events": False})
    assert "trained with events but is scored without" in engaged
    assert engaged.endswith("Give --events FILE to score as trained.")


def test_float_customer_ids_of_an_export_join_a_crm_of_integer_ids(tmp_path):
    path, crm = tmp_path / "export.csv", tmp_path / "customers.csv"
    ids = [str(17850 + i) for i in range(25)]
    rows = [f"5{i},22633,HAND WARMER,2,12/{1 + i}/2010 8:26,1.85,{c}.0,United Kingdom" for i, c in enumerate(ids)]
    path.write_text(EXPORT.splitlines()[0] + "\n" + "\n".join(rows) + "\n")
    pd.DataFrame({"customer_id": ids, "segment": "retail"}).to_csv(crm, index=False)
    tables = load_tables(path, customers=crm, config=_config())
    assert sorted(tables.transactions["customer_id"]) == sorted(tables.customers["customer_id"]) == ids
    # written with a prefix in the CRM, the same customers share no id: refused, naming both files
    pd.DataFrame({"customer_id": [f"C{i}" for i in ids], "segment": "retail"}).to_csv(crm, index=False)
    with pytest.raises(DataError, match=r"share 0 customer ids: 25 in the transactions, 25 in the customers"):
        load_tables(path, customers=crm, config=_config())
