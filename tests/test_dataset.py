"""Every kind of bad input gets a clear error naming the file, column, row count and examples."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnguard import dataset
from churnguard.config import DataConfig
from churnguard.dataset import DataError, check_columns, feature_columns, load_tables, validate_tables
from churnguard.dataset import read as dataset_read
from churnguard.dataset import tables as dataset_tables
from churnguard.dataset import values as dataset_values
from churnguard.dataset.tables import _isin

STRICT = DataConfig()
REJECT = DataConfig(on_bad_rows="reject")


def _tx(**overrides):
    base = {
        "customer_id": ["a", "b", "c"],
        "timestamp": ["2024-01-01", "2024-01-02", "2024-01-03"],
        "amount": ["1.5", "2", "-3"],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_clean_input_is_typed():
    t = validate_tables(_tx(), config=STRICT)
    assert str(t.transactions["timestamp"].dtype).startswith("datetime64")
    assert t.transactions["amount"].tolist() == [1.5, 2.0, -3.0]
    assert t.rejects.empty


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: transactions file not found"):
        load_tables(tmp_path / "nope.csv", config=STRICT)


def test_empty_file(tmp_path):
    p = tmp_path / "tx.csv"
    p.write_text("")
    with pytest.raises(DataError, match=r"tx\.csv: the transactions file is empty"):
        load_tables(p, config=STRICT)


def test_header_only_file(tmp_path):
    p = tmp_path / "tx.csv"
    p.write_text("customer_id,timestamp,amount\n")
    with pytest.raises(DataError, match=r"tx\.csv: the transactions file has no rows"):
        load_tables(p, config=STRICT)


def test_unsupported_extension(tmp_path):
    p = tmp_path / "tx.xlsx"
    p.write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'"):
        load_tables(p, config=STRICT)


def test_missing_required_column(tmp_path):
    p = tmp_path / "tx.csv"
    _tx().drop(columns="amount").to_csv(p, index=False)
    with pytest.raises(DataError, match=r"tx\.csv: required transactions column\(s\) 'amount' not found in 3 rows"):
        load_tables(p, config=STRICT)


def test_column_mapping(tmp_path):
    p = tmp_path / "tx.csv"
    _tx().rename(columns={"customer_id": "CustomerID", "amount": "Total"}).to_csv(p, index=False)
    cfg = DataConfig.model_validate({"columns": {"transactions": {"customer_id": "CustomerID", "amount": "Total"}}})
    assert len(load_tables(p, config=cfg).transactions) == 3
    bad = DataConfig.model_validate({"columns": {"transactions": {"customer_id": "Cust"}}})
    with pytest.raises(DataError, match=r"column 'Cust' \(mapped to 'customer_id'.*not found"):
        load_tables(p, config=bad)


def test_unparseable_dates():
    with pytest.raises(DataError, match=r"(?s)1 of 3 transactions row\(s\).*'timestamp': 1 row\(s\) have an unparseable date, e\.g\. 'soon'"):
        validate_tables(_tx(timestamp=["2024-01-01", "soon", "2024-01-03"]), config=STRICT)


def test_counts_of_bad_rows_are_written_with_thousands_separators(caplog):
    """Row counts read as the rest of the output writes them (1,200 of 2,400), in the error, the log line of the
    rows set aside and the rejects summary."""
    from churnguard.dataset import rejects_summary

    n = 2400
    tx = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "timestamp": ["2024-01-01"] * n,
                       "amount": ["x", "1"] * (n // 2)})
    with pytest.raises(DataError, match=r"2,400 transactions row\(s\) cannot be used:\n  column 'amount': 1,200 row"):
        validate_tables(tx, config=STRICT)
    with caplog.at_level(logging.WARNING, logger="churnguard.dataset"):
        tables = validate_tables(tx, config=REJECT)
    assert "set aside 1,200 of 2,400 transactions rows (see rejects)" in caplog.text
    assert rejects_summary(tables.rejects) == "rejected rows: 1,200 (transactions: 1,200 are not numeric)"


def test_mixed_date_styles_always_raise():
    tx = _tx(timestamp=["2024-01-13", "13/01/2024", "2024-01-14"])
    for cfg in (STRICT, REJECT):
        with pytest.raises(DataError, match=r"column 'timestamp' mixes date styles: of 3 rows, 2 are in the "
                           r"style 'ISO8601' \(e.g. '2024-01-13', '2024-01-14'\) and 1 in another \(e.g. '13/01/2024'\)\. "
                           r"Set data.date_format"):
            validate_tables(tx, config=cfg)


def test_a_first_date_in_no_known_style_raises():
    # No ISO value, so the first value decides the style, and it fits none: the column cannot be read.
    with pytest.raises(DataError, match=r"column 'timestamp': its first value 'soon' is a date in no known style"):
        validate_tables(_tx(timestamp=["soon", "13/01/2024", "14/01/2024"]), config=REJECT)


def test_date_censuses_of_parts_merge_into_the_census_of_the_whole():
    # The Dask engine decides a column's style on chunks: every cut must give the census of the whole column.
    text = pd.Series(["13/01/2024", None, "2024-01-14", "14/01/2024", "15/01/2024", "2024-01-15"], dtype="string")
    for fmt in (None, "%d/%m/%Y"):
        whole = dataset.date_census(text, fmt)[1]
        for cut in range(len(text) + 1):
            parts = dataset.date_census(text[:cut], fmt)[1], dataset.date_census(text[cut:], fmt)[1]
            assert dataset.merge_census(*parts) == whole
    assert (whole.mixed, whole.ok, whole.bad) == (2, ("13/01/2024", "14/01/2024"), ("2024-01-14", "2024-01-15"))


def test_ambiguous_day_month_dates_are_read_month_first_with_a_warning(caplog):
    # No number above 12 in either place: 1/2/2024 is 2 January (pandas' reading) or 1 February; the warning
    # says which reading was taken and the format that takes the other.
    with caplog.at_level(logging.WARNING, logger="churnguard.dataset"):
        t = validate_tables(_tx(timestamp=["1/2/2024 8:26", "3/4/2024 9:00", "12/11/2024 10:00"]), config=STRICT)
    assert t.transactions["timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-02", "2024-03-04", "2024-12-11"]
    assert ("transactions: column 'timestamp': no date has a day above 12, so day and month cannot be told apart; "
            "read month first ('%m/%d/%Y %H:%M', e.g. '1/2/2024 8:26' is 2 January 2024). If days come first, set "
            "data.date_format: '%d/%m/%Y %H:%M'") in caplog.text


@pytest.mark.parametrize(("stamps", "days"), [
    (["1/2/2024", "3/4/2024", "13/4/2024"], ["2024-02-01", "2024-04-03", "2024-04-13"]),  # 13 first: day first
    (["1/2/2024", "3/4/2024", "4/13/2024"], ["2024-01-02", "2024-03-04", "2024-04-13"]),  # 13 second: month first
    (["13.1.2024", "1.2.2024", "5.3.2024"], ["2024-01-13", "2024-02-01", "2024-03-05"]),
])
def test_a_day_above_12_anywhere_decides_the_order_without_a_warning(stamps, days, caplog):
    with caplog.at_level(logging.WARNING, logger="churnguard.dataset"):
        t = validate_tables(_tx(timestamp=stamps), config=STRICT)
    assert t.transactions["timestamp"].dt.strftime("%Y-%m-%d").tolist() == days
    assert "cannot be told apart" not in caplog.text


def test_day_month_proof_of_parts_adds_up():
    text = pd.Series(["1/2/2024", "13/2/2024", None, "2/14/2024", "2024-01-05", "14/3/2024"], dtype="string")
    whole = dataset.date_census(text)[1]
    assert (whole.day_first, whole.month_first) == (2, 1)
    for cut in range(len(text) + 1):
        assert dataset.merge_census(dataset.date_census(text[:cut])[1], dataset.date_census(text[cut:])[1]) == whole


def test_explicit_date_format():
    tx = _tx(timestamp=["13/01/2024 10:00", "14/01/2024 11:00", "15/01/2024 12:00"])
    t = validate_tables(tx, config=DataConfig(date_format="%d/%m/%Y %H:%M"))
    assert t.transactions["timestamp"].iloc[0] == pd.Timestamp("2024-01-13 10:00")


def test_dates_not_in_the_configured_style_are_said_to_be_so():
    """data.date_format applies to every table: ISO tickets read with a day-first format fail whole, and the
    error names the format (it said 'unparseable date' of '2024-01-20 10:00')."""
    tx = _tx(timestamp=["13/01/2024 10:00", "14/01/2024 11:00", "15/01/2024 12:00"])
    tickets = pd.DataFrame({"customer_id": ["a", "b"], "opened_at": ["2024-01-20 10:00", "soon"]})
    with pytest.raises(DataError, match=re.escape(
            "column 'opened_at': 2 row(s) are not dates in data.date_format '%d/%m/%Y %H:%M', e.g. '2024-01-20 "
            "10:00', 'soon'")):
        validate_tables(tx, tickets, config=DataConfig(date_format="%d/%m/%Y %H:%M"))
    with pytest.raises(DataError, match=r"'opened_at': 1 row\(s\) have an unparseable date, e\.g\. 'soon'"):
        validate_tables(_tx(), tickets, config=STRICT)


def test_non_numeric_amounts():
    with pytest.raises(DataError, match=r"'amount': 2 row\(s\) are not numeric, e\.g\. '1,5', 'ten'"):
        validate_tables(_tx(amount=["1,5", "ten", "3"]), config=STRICT)


def test_empty_customer_ids():
    with pytest.raises(DataError, match=r"'customer_id': 1 row\(s\) are empty"):
        validate_tables(_tx(customer_id=["a", "  ", "c"]), config=STRICT)
    # a missing cell has no value to quote: no "e.g." before the row numbers
    with pytest.raises(DataError, match=r"'customer_id': 1 row\(s\) are empty \(rows 2\)"):
        validate_tables(_tx(customer_id=["a", None, "c"]), config=STRICT)


def test_reject_mode_reports_every_bad_row():
    t = validate_tables(_tx(customer_id=["a", "", "c"], amount=["1", "2", "x"]), config=REJECT)
    assert t.transactions["customer_id"].tolist() == ["a"]
    assert sorted(t.rejects["reason"]) == ["are empty", "are not numeric"]
    assert t.rejects["row"].tolist() == [2, 3]
    assert len(t.transactions) + len(t.rejects) == 3  # nothing lost


def test_all_rows_bad_raises_even_in_reject_mode():
    with pytest.raises(DataError, match="no usable rows remain"):
        validate_tables(_tx(amount=["x", "y", "z"]), config=REJECT)


def test_tickets_of_unknown_customers():
    tk = pd.DataFrame({"customer_id": ["a", "zz"], "opened_at": ["2024-01-02", "2024-01-02"]})
    with pytest.raises(DataError, match=r"(?s)tickets: 1 of 2 tickets.*1 row\(s\) belong to customers found in neither.*'zz'"):
        validate_tables(_tx(), tk, config=STRICT)
    t = validate_tables(_tx(), tk, config=REJECT)
    assert t.rejects["customer_id"].tolist() == ["zz"]


def test_ticket_answered_before_opened():
    tk = pd.DataFrame(
        {"customer_id": ["a"], "opened_at": ["2024-01-02 10:00"], "first_response_at": ["2024-01-02 09:00"]}
    )
    with pytest.raises(DataError, match=r"'first_response_at': 1 row\(s\) are earlier than opened_at"):
        validate_tables(_tx(), tk, config=STRICT)


def test_out_of_range_scores():
    cu = pd.DataFrame({"customer_id": ["a", "b"], "nps": ["11", "5"]})
    with pytest.raises(DataError, match=r"'nps': 1 row\(s\) lie outside 0\.\.10, e\.g\. '11'"):
        validate_tables(_tx(), customers=cu, config=STRICT)
    tk = pd.DataFrame({"customer_id": ["a"], "opened_at": ["2024-01-02"], "csat": ["0"]})
    with pytest.raises(DataError, match=r"'csat': 1 row\(s\) lie outside 1\.\.5"):
        validate_tables(_tx(), tk, config=STRICT)


def test_duplicate_customers_and_bad_flags():
    cu = pd.DataFrame({"customer_id": ["a", "a", "b"], "loyalty_member": ["yes", "no", "maybe"]})
    with pytest.raises(DataError) as err:
        validate_tables(_tx(), customers=cu, config=STRICT)
    assert "'loyalty_member': 1 row(s) are not true/false, e.g. 'maybe'" in str(err.value)
    assert "'customer_id': 2 row(s) are duplicate customer ids" in str(err.value)


def test_timezone_aware_times_become_utc():
    tx = _tx(timestamp=["2024-01-01T10:00:00+02:00", "2024-01-01T10:00:00Z", "2024-01-02T00:00:00+00:00"])
    t = validate_tables(tx, config=STRICT)
    assert t.transactions["timestamp"].iloc[0] == pd.Timestamp("2024-01-01 08:00")


def test_parquet_round_trip(tmp_path):
    p = tmp_path / "tx.parquet"
    df = _tx()
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df["amount"] = df["amount"].astype(float)
    df.to_parquet(p)
    assert load_tables(p, config=STRICT).transactions["amount"].sum() == pytest.approx(0.5)


def test_feature_columns_follow_the_mapping_and_keep_everything_when_a_required_one_is_missing():
    config = DataConfig(columns={"transactions": {"customer_id": "CustomerID", "amount": "Total"}})
    names = ["InvoiceDate", "CustomerID", "Total", "channel", "order_id", "timestamp", "discount"]
    assert feature_columns("transactions", names, config) == ["CustomerID", "Total", "order_id", "timestamp"]
    assert feature_columns("transactions", ["CustomerID", "InvoiceDate", "Total"], config) == [
        "CustomerID", "InvoiceDate", "Total"]  # no timestamp: every column, for the error to list
    assert feature_columns("tickets", ["customer_id", "opened_at", "channel", "csat", "ticket_id"], DataConfig()) == [
        "customer_id", "opened_at", "csat"]
    assert feature_columns("customers", ["customer_id", "region", "nps"], DataConfig()) == ["customer_id", "region", "nps"]
    mapped = DataConfig(columns={"transactions": {"discount": "Disc"}})  # a mapped column is read and checked
    assert feature_columns("transactions", ["customer_id", "timestamp", "amount", "Disc", "channel"], mapped) == [
        "customer_id", "timestamp", "amount", "Disc"]
    assert feature_columns("transactions", ["customer_id", "timestamp", "amount", "channel"], mapped) == [
        "customer_id", "timestamp", "amount", "channel"]  # the mapped column is missing: every column


def test_check_columns_names_the_missing_column_and_every_column_of_the_file():
    with pytest.raises(DataError, match=r"^tx.csv: required transactions column\(s\) 'timestamp' not found; the file "
                                        r"has columns: customer_id, InvoiceDate, amount\. Map your names"):
        check_columns("transactions", ["customer_id", "InvoiceDate", "amount"], "tx.csv", STRICT)
    with pytest.raises(DataError, match=r"not found in 12 rows"):
        check_columns("transactions", ["customer_id", "amount"], "tx.csv", STRICT, rows=12)
    mapped = DataConfig(columns={"tickets": {"csat": "Score"}})
    with pytest.raises(DataError, match=r"column 'Score' \(mapped to 'csat' in data.columns.tickets\) not found; "
                                        r"the file has 3 columns: customer_id, opened_at, csat"):
        check_columns("tickets", ["customer_id", "opened_at", "csat"], "tk.csv", mapped)
    check_columns("customers", ["customer_id"], "cu.csv", STRICT)  # nothing missing: no error
    with pytest.raises(DataError, match=r"^cu.csv: the customers file has no rows \(columns: customer_id\)$"):
        check_columns("customers", ["customer_id"], "cu.csv", STRICT, rows=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", None]), max_size=12),
       st.lists(st.lists(st.sampled_from(["a", "b", "c", "x"]), max_size=8), min_size=1, max_size=3))
def test_isin_finds_values_in_any_table_whatever_their_order(values, among):
    got = _isin(pd.Series(values, dtype="str"), [pd.Series(o, dtype="str") for o in among])
    assert got.tolist() == [v is not None and any(v in o for o in among) for v in values]


# -- values that parse but cannot be true ---------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "reason"), [
    ("inf", "are not finite numbers"), ("-Infinity", "are not finite numbers"), ("1e309", "are not finite numbers"),
    ("1e308", "lie outside -1,000,000,000,000..1,000,000,000,000")])
def test_non_finite_and_huge_amounts_are_bad_rows(amount, reason):
    with pytest.raises(DataError, match=f"column 'amount': 1 row\\(s\\) {reason}"):
        validate_tables(_tx(amount=["1", amount, "2"]), config=STRICT)
    t = validate_tables(_tx(amount=["1", amount, "2"]), config=REJECT)
    assert list(t.transactions["customer_id"]) == ["a", "c"]
    assert t.rejects[["row", "column", "value", "reason"]].to_numpy().tolist() == [[2, "amount", amount, reason]]


def test_huge_amounts_never_add_up_to_infinity():
    t = validate_tables(_tx(amount=["1e308", "1e308", "5"]), config=REJECT)
    assert t.transactions["amount"].sum() == 5  # both huge rows set aside, not summed into inf


def test_dates_after_today_are_bad_rows_and_do_not_move_today():
    tomorrow_plus = (pd.Timestamp.now("UTC") + pd.Timedelta(days=3)).strftime("%Y-%m-%d")
    t = validate_tables(_tx(timestamp=["2024-01-01", "2099-06-01", tomorrow_plus]), config=REJECT)
    assert t.rejects["reason"].str.startswith("are dated after today").all()
    assert len(t.rejects) == 2
    assert t.last_date() == pd.Timestamp("2024-01-01")
    with pytest.raises(DataError, match=r"column 'timestamp': 2 row\(s\) are dated after today \(\d{4}-\d\d-\d\d\), "
                                        r"e\.g\. '2099-06-01'"):
        validate_tables(_tx(timestamp=["2024-01-01", "2099-06-01", tomorrow_plus]), config=STRICT)


def test_years_beyond_the_timestamp_range_are_bad_rows_in_text_and_parquet(tmp_path):
    with pytest.raises(DataError, match=r"column 'timestamp': 1 row\(s\) are dates outside the years 1678-2261, "
                                        r"e\.g\. '3000-01-02' \(rows 2\)"):
        validate_tables(_tx(timestamp=["2024-01-01", "3000-01-02", "2024-01-03"]), config=STRICT)
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "amount": [1.0, 2.0, 3.0],
                          "timestamp": np.array(["2024-01-01", "3000-01-01", "NaT"], dtype="datetime64[us]")})
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    t = load_tables(path, config=REJECT)
    assert list(t.transactions["customer_id"]) == ["a"]
    # a column of dates has no unparseable one: a date beyond the range is one, a missing one is empty
    assert t.rejects["reason"].tolist() == ["are dates outside the years 1678-2261", "are empty"]


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_repeated_column_name_is_refused(tmp_path, suffix):
    path = tmp_path / f"tx.{suffix}"
    if suffix == "csv":
        path.write_text("customer_id,timestamp,amount,customer_id\na,2024-01-01,1,b\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table([["a"], ["2024-01-01"], [1.0], ["b"]],
                                names=["customer_id", "timestamp", "amount", "customer_id"]), path)
    with pytest.raises(DataError, match=f"{path}: the transactions file has 1 column name\\(s\\) more than once: "
                                        "'customer_id'; rename or drop"):
        load_tables(path, config=STRICT)


def test_no_usable_timestamp_means_no_day_to_take():
    t = validate_tables(_tx().iloc[:0], config=STRICT, allow_empty=True)
    with pytest.raises(DataError, match="no transaction has a usable timestamp.*--as-of"):
        t.last_date()


@pytest.mark.parametrize("where", ["first", "middle"])
def test_a_row_with_more_fields_than_the_header_is_a_bad_row(tmp_path, where):
    """An unquoted 1,234.50: never amount 1 with order 234.50, never every column shifted."""
    rows = ["a,2024-01-01,5,o1", "b,2024-01-02,1,234.50,o2", "c,2024-01-03,7,o3"]
    if where == "first":
        rows = [rows[1], rows[0], rows[2]]
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,timestamp,amount,order_id\n" + "\n".join(rows) + "\n")
    line = 1 if where == "first" else 2
    with pytest.raises(DataError, match=rf"tx\.csv: 1 of 3 transactions row\(s\) cannot be used:\n  column "
                                        rf"'\(whole row\)': 1 row\(s\) have more fields than the header .*1,234\.50"
                                        rf".*e\.g\. 'b,2024-01-02,1,234\.50,o2' \(rows {line}\)"):
        load_tables(path, config=STRICT)
    t = load_tables(path, config=REJECT)
    assert sorted(t.transactions["customer_id"]) == ["a", "c"]
    assert t.transactions["amount"].sum() == 12
    assert t.rejects[["row", "customer_id", "column", "value"]].to_numpy().tolist() == [
        [line, "b", "(whole row)", "b,2024-01-02,1,234.50,o2"]]


def test_utf16_gzip_and_empty_files(tmp_path):
    import gzip

    text = "customer_id,timestamp,amount\na,2024-01-01,5\n"
    path = tmp_path / "tx.csv"
    path.write_bytes(text.encode("utf-16"))
    with pytest.raises(DataError, match=r"tx\.csv: cannot read transactions file: the file is not UTF-8 text"):
        load_tables(path, config=STRICT)
    gz = tmp_path / "tx.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert load_tables(gz, config=STRICT).transactions["amount"].tolist() == [5.0]
    gz.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match=r"tx\.csv\.gz: the transactions file is empty"):
        load_tables(gz, config=STRICT)


def test_ids_written_as_whole_floats_are_integers():
    assert dataset.id_text(pd.Series([12346.0, np.nan, 7.5])).tolist()[::2] == ["12346", "7.5"]
    assert dataset.id_text(pd.Series([12346.0, np.nan])).isna().tolist() == [False, True]
    text = pd.Series([" 12346.0", "12346.00", "007.0", "-3.0", "1.05", "A1.0", "1e3", "", None])
    assert dataset.id_text(text).fillna("<NA>").tolist() == [
        "12346", "12346", "007", "-3", "1.05", "A1.0", "1e3", "<NA>", "<NA>"]


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_float_ids_join_integer_ids(tmp_path, suffix):
    """Online-Retail-style CustomerID 12346.0 (text, or a Parquet float column) joins a CRM's 12346."""
    tx = pd.DataFrame({"customer_id": [12346.0, 12347.0, 12346.0], "timestamp": ["2024-01-01"] * 3,
                       "amount": [1.0, 2.0, 3.0]})
    path = tmp_path / f"tx.{suffix}"
    tx.to_csv(path, index=False) if suffix == "csv" else tx.to_parquet(path)
    cu = tmp_path / "cu.csv"
    cu.write_text("customer_id,region\n12346,north\n12347,south\n")
    t = load_tables(path, customers=cu, config=STRICT)
    assert t.transactions["customer_id"].tolist() == ["12346", "12347", "12346"]
    assert sorted(t.customer_ids()) == ["12346", "12347"]


def test_tables_sharing_almost_no_ids_are_refused(tmp_path):
    n = dataset.MIN_IDS_JUDGED
    tx = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "timestamp": "2024-01-01", "amount": "1"})
    cu = pd.DataFrame({"customer_id": [str(i) for i in range(n + 1)]})
    sources = {"transactions": "tx.csv", "customers": "cu.csv"}
    with pytest.raises(DataError, match=rf"tx\.csv and cu\.csv share 0 customer ids: {n} in the transactions, "
                                        rf"{n + 1} in the customers; e\.g\. 'C0', 'C1', 'C2' only in tx\.csv, '0', "
                                        r"'1', '2' only in cu\.csv"):
        validate_tables(tx, customers=cu, config=STRICT, sources=sources)
    # Fewer ids than that are too few to judge; a CRM listing many customers who never bought is no mismatch.
    assert len(validate_tables(tx.iloc[1:], customers=cu, config=STRICT).customers) == n + 1
    crm = pd.concat([cu, tx[["customer_id"]]], ignore_index=True)
    assert len(validate_tables(tx, customers=crm, config=STRICT).customers) == 2 * n + 1


def test_only_excel_serial_dates_or_no_rows_say_what_to_do(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,timestamp,amount\na,45123,5\nb,45200,7\n")
    with pytest.raises(DataError, match=r"tx\.csv: column 'timestamp': its first value '45123' is a date in no "
                                        "known style"):
        load_tables(path, config=STRICT)
    with pytest.raises(DataError, match=r"(?s)tx\.csv: 2 of 2 transactions row\(s\) cannot be used:.*not dates in "
                                        "data.date_format '%Y-%m-%d'"):
        load_tables(path, config=DataConfig(on_bad_rows="reject", date_format="%Y-%m-%d"))


def test_naive_timestamps_are_utc_also_mixed_with_zoned_ones():
    tx = pd.DataFrame({"customer_id": ["a", "b", "c"], "amount": ["1", "2", "3"],
                       "timestamp": ["2024-01-01 10:00", "2024-01-02T10:00:00+02:00", "2024-01-03 23:30:00-05:00"]})
    t = validate_tables(tx, config=DataConfig())
    assert t.transactions["timestamp"].tolist() == [pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-02 08:00"),
                                                    pd.Timestamp("2024-01-04 04:30")]


def test_text_cells_strip_and_read_blank_cells_as_missing():
    raw = pd.Series([" a ", "\tb\n", "", "   ", None, 5, "c d"], dtype=object)
    assert dataset.text_cells(raw).fillna("<NA>").tolist() == ["a", "b", "<NA>", "<NA>", "<NA>", "5", "c d"]
    assert dataset.text_cells(pd.Series([], dtype="str")).empty


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", None]), max_size=12))
def test_repeated_ids_are_those_pandas_calls_duplicated(values):
    ids = pd.Series(values, dtype="str")
    assert dataset_tables._repeated(ids).tolist() == (ids.duplicated(keep=False) & ids.notna()).tolist()


def test_id_overlap_counts_distinct_ids_and_names_the_first_ones_the_other_table_lacks():
    tables = dataset.Tables(pd.DataFrame({"customer_id": pd.Series(["e", "a", "e", None, "d", "c", "f"], dtype="str")}),
                            customers=pd.DataFrame({"customer_id": pd.Series(["a", "b", "c", "g"], dtype="str")}))
    assert dataset.id_overlap(tables) == dataset.IdOverlap(transactions=5, customers=4, shared=2,
                                                           only_transactions=("e", "d", "f"), only_customers=("b", "g"))


_SPACES = ["", " ", "\t", "\u00a0", "\u3000", "\u2028", "\x1c", "\x85"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.none(), st.tuples(st.sampled_from(_SPACES), st.sampled_from(["a", "b1", "é", "12.0"]),
                                                st.sampled_from(_SPACES)).map("".join)), max_size=10))
def test_text_cells_strip_and_blank_as_arrow_does(values):
    """Skipping the trim for columns without edge whitespace changes nothing: the cells are Arrow's trim of every
    value, blank cells missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    raw = pd.Series(values, dtype="str")
    trimmed = pc.utf8_trim_whitespace(pa.array(values, type=pa.large_string())).to_pylist()
    assert dataset.text_cells(raw).astype(object).where(lambda s: s.notna(), None).tolist() == [
        v if v else None for v in trimmed]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", " a", "a ", "b", "7", "7.0", " 7.00", "", None, "e"]), min_size=1, max_size=12),
       st.lists(st.sampled_from(["a", "b", "7", "c", "e"]), max_size=6))
def test_id_codes_describe_the_validated_ids_and_agree_with_their_text(tx_ids, cu_ids):
    """Validation encodes each table's ids once, on one array of distinct ids shared by the tables: the codes
    decode to the validated column, every shared id is some row's, duplicates, unknown owners and the overlap
    come out as from the text, and a changed frame has no codes."""
    from dataclasses import replace

    n = len(tx_ids)
    tx = pd.DataFrame({"customer_id": pd.Series(tx_ids, dtype="str"), "timestamp": ["2024-01-01"] * n,
                       "amount": ["x" if i % 5 == 1 else "1" for i in range(n)]})
    cu = pd.DataFrame({"customer_id": pd.Series(cu_ids + ["a"], dtype="str")})
    tk = pd.DataFrame({"customer_id": pd.Series(["a", "zz", "7"], dtype="str"), "opened_at": ["2024-01-01"] * 3})
    try:
        tables = validate_tables(tx, tk, cu, config=REJECT)
    except DataError:
        return  # no usable rows, or ids too different: the same error either way (tested elsewhere)
    shared = tables.id_codes("transactions").distinct
    for name in ("transactions", "tickets", "customers"):
        codes, column = tables.id_codes(name), getattr(tables, name)["customer_id"]
        assert codes.distinct is shared
        assert codes.distinct.take(codes.codes).to_pylist() == column.tolist()
        assert len(set(codes.distinct.to_pylist())) == len(codes.distinct)
    assert (tables.id_codes("transactions").present() | tables.id_codes("customers").present()).all()
    assert dataset.id_overlap(tables) == dataset.id_overlap(replace(tables, ids={}))
    seen = pd.Series(["a", "7", "q"], dtype="str")
    for name in ("transactions", "tickets", "customers"):
        assert tables.has_ids(name, seen).tolist() == _isin(getattr(tables, name)["customer_id"], [seen]).tolist()
    every = ("transactions", "customers", "tickets")
    left = set(pd.concat([getattr(tables, t)["customer_id"] for t in every]).dropna()) - set(seen)
    assert sorted(tables.ids_not_in(seen, every)) == sorted(left)
    assert sorted(replace(tables, ids={}).ids_not_in(seen, every)) == sorted(left)
    changed = replace(tables, transactions=tables.transactions.iloc[::-1].reset_index(drop=True))
    assert changed.id_codes("transactions") is None
    assert changed.id_codes("customers") is not None
    assert (tables.rejects["reason"] == "are duplicate customer ids").sum() == cu["customer_id"].duplicated(
        keep=False).sum()


_IDS = ["a", " a", "b", "7", "7.0", "", None, "c", "zz"]


def _load(paths: dict, config: DataConfig, block_rows: int, **kwargs):
    """``load_tables`` of ``paths`` with Parquet read ``block_rows`` rows at a time: the tables, or the error."""
    before, dataset_read.BLOCK_ROWS = dataset_read.BLOCK_ROWS, block_rows
    try:
        return load_tables(paths["tx"], paths["tk"], paths["cu"], config=config, **kwargs)
    except DataError as exc:
        return str(exc)
    finally:
        dataset_read.BLOCK_ROWS = before


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_IDS), st.sampled_from([1.0, -2.5, np.inf, 2e12, np.nan]),
                          st.sampled_from(["2024-01-01", "2024-03-05 10:00", None, "2200-01-01"]),
                          st.sampled_from(["o1", "o2", None, "fee"])), min_size=1, max_size=14),
       st.lists(st.tuples(st.sampled_from(_IDS), st.sampled_from(["2024-01-02", None]),
                          st.sampled_from(["2024-01-01", "2024-01-03", None])), min_size=1, max_size=6),
       st.lists(st.sampled_from(_IDS), min_size=1, max_size=6),
       st.integers(1, 5), st.sampled_from(["raise", "reject"]), st.booleans(), st.booleans())
def test_parquet_checked_in_blocks_is_checked_as_a_whole(tx_rows, tk_rows, cu_ids, block_rows, mode, exclude,
                                                         feature_inputs_only):
    """A Parquet file read and checked a few rows at a time gives the tables, rejects (row numbers included),
    exclusion counts, id codes and error messages of the file checked at once."""
    import tempfile
    from pathlib import Path

    ids, amounts, days, orders = zip(*tx_rows, strict=True)
    frames = {
        "tx": pd.DataFrame({"customer_id": pd.Series(ids, dtype="str"), "amount": amounts,
                            "timestamp": pd.to_datetime(pd.Series(days), format="ISO8601"), "order_id": pd.Series(orders, dtype="str"),
                            "channel": "web"}),
        "tk": pd.DataFrame({"customer_id": pd.Series([r[0] for r in tk_rows], dtype="str"),
                            "opened_at": pd.to_datetime(pd.Series([r[1] for r in tk_rows])),
                            "resolved_at": pd.to_datetime(pd.Series([r[2] for r in tk_rows]))}),
        "cu": pd.DataFrame({"customer_id": pd.Series(cu_ids, dtype="str"), "region": "north"}),
    }
    config = DataConfig(on_bad_rows=mode, exclude={"transactions": {"order_id": ["fee"]}} if exclude else {})
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: Path(tmp) / f"{name}.parquet" for name in frames}
        for name, frame in frames.items():
            frame.to_parquet(paths[name], index=False, row_group_size=3)
        whole, blocks = (_load(paths, config, n, feature_inputs_only=feature_inputs_only)
                         for n in (10**6, block_rows))
    if isinstance(whole, str):
        assert blocks == whole
        return
    for name in ("transactions", "tickets", "customers"):
        pd.testing.assert_frame_equal(getattr(blocks, name), getattr(whole, name), check_exact=True)
        codes = blocks.id_codes(name)
        assert codes.distinct.take(codes.codes).to_pylist() == getattr(blocks, name)["customer_id"].tolist()
    pd.testing.assert_frame_equal(blocks.rejects, whole.rejects, check_exact=True)
    assert blocks.excluded == whole.excluded
    if feature_inputs_only:
        assert list(blocks.transactions.columns) == ["customer_id", "amount", "timestamp", "order_id"]


def test_a_customers_table_without_any_id_is_refused_by_name():
    tx = pd.DataFrame({"customer_id": ["a"], "timestamp": ["2024-01-01"], "amount": ["1"]})
    cu = pd.DataFrame({"customer_id": pd.Series([None, " "], dtype="str")})
    with pytest.raises(DataError, match=r"(?s)2 of 2 customers row\(s\) cannot be used:.*'customer_id': 2 row\(s\) "
                                        r"are empty.*no usable rows remain"):
        validate_tables(tx, customers=cu, config=REJECT)


def test_category_codes_of_categories_held_in_several_arrow_chunks():
    """A categorical id column whose categories Arrow holds in two chunks gives one Arrow array of the ids its
    rows use (an unused one left out) and each row's position in it."""
    import pyarrow as pa

    from churnguard.dataset import category_codes

    levels = pd.Index(pd.array(pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(["a1", "b2"]), pa.array(["c3"])])),
                               dtype=pd.StringDtype("pyarrow", na_value=np.nan)))
    ids = pd.Series(pd.Categorical.from_codes([2, 0, -1, 2], dtype=pd.CategoricalDtype(levels)))
    distinct, codes = category_codes(ids)
    assert isinstance(distinct, pa.Array)
    assert distinct.to_pylist() == ["a1", "c3"]
    one_chunk = pd.Series(pd.Categorical.from_codes([1, 0], dtype=pd.CategoricalDtype(pd.Index(
        pd.array(["C0000003", "C0000004"], dtype=pd.StringDtype("pyarrow", na_value=np.nan))))))
    assert category_codes(one_chunk)[0].to_pylist() == ["C0000003", "C0000004"]
    assert codes.tolist() == [1, 0, -1, 1]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["a", " a", "b", "7", "7.0", "", None, "e", "d"]), min_size=1, max_size=12),
       st.lists(st.sampled_from(["a", "b", "7", "c", "e"]), max_size=6))
def test_coded_ids_hold_the_text_ids_as_codes_of_the_sorted_shared_ids(tx_ids, cu_ids):
    """``coded_ids``: every table's ids are a categorical of one type whose categories are the shared distinct
    ids in text order; the values, the rejects, the customers left out and the features are those of the text
    ids."""
    from churnguard.config import load_config
    from churnguard.features import build_features

    n = len(tx_ids)
    tx = pd.DataFrame({"customer_id": pd.Series(tx_ids, dtype="str"),
                       "timestamp": [f"2024-01-{1 + i % 9:02d}" for i in range(n)],
                       "amount": ["x" if i % 5 == 1 else str(i - 2) for i in range(n)]})
    cu = pd.DataFrame({"customer_id": pd.Series(cu_ids + ["a"], dtype="str")})
    tk = pd.DataFrame({"customer_id": pd.Series(["a", "zz", "7"], dtype="str"), "opened_at": ["2024-01-01"] * 3})
    try:
        text = validate_tables(tx, tk, cu, config=REJECT)
    except DataError:
        return
    coded = validate_tables(tx, tk, cu, config=REJECT, coded_ids=True)
    dtype = coded.transactions["customer_id"].dtype
    categories = dtype.categories.tolist()
    assert categories == sorted(categories)
    assert len(set(categories)) == len(categories)
    for name in ("transactions", "tickets", "customers"):
        column = getattr(coded, name)["customer_id"]
        assert column.dtype is dtype
        assert coded.id_codes(name) is not None
        assert column.astype("str").tolist() == getattr(text, name)["customer_id"].tolist()
        pd.testing.assert_frame_equal(getattr(coded, name).drop(columns="customer_id"),
                                      getattr(text, name).drop(columns="customer_id"))
    pd.testing.assert_frame_equal(coded.rejects, text.rejects)
    assert coded.customer_ids().tolist() == text.customer_ids().tolist()
    seen = pd.Series(["a", "7", "q"], dtype="str")
    every = ("transactions", "customers", "tickets")
    assert sorted(coded.ids_not_in(seen, every)) == sorted(text.ids_not_in(seen, every))
    assert coded.ids_not_in(seen, every).dtype == text.transactions["customer_id"].dtype
    features = load_config().features
    pd.testing.assert_frame_equal(build_features(coded, "2024-01-31", features),
                                  build_features(text, "2024-01-31", features), check_exact=True)


_CSV_IDS = ["a", " a", "b", "7", "7.0", "", "c", "zz"]
_CSV_AMOUNTS = ["1", "-2.5", "1e3", "inf", "x", " 3 ", "-0", "", "12.345", "2e12", "0.1"]
_ISO_DAYS = ["2024-01-01", "2024-03-05 10:00:00", "2024-03-05T10:00:00.5", "", "2200-01-01", "2024-02-30"]
_OTHER_DAYS = ["13/01/2024", "01/02/2024", "5/3/2024 10:00", "2024-01-09", "", "Jan 2024"]


def _csv_load(paths: dict, config: DataConfig, block_bytes: int | None, caplog, **kwargs):
    """``load_tables`` of CSV ``paths`` read ``block_bytes`` at a time (None: each file read whole, as
    ``_io.read.csv_rows`` reads it): the tables (or the error) and the warnings logged."""
    from unittest import mock

    caplog.clear()
    whole = (lambda path, table, config, only: dataset.RawTable.whole(dataset_read._read(path, table, config, only)))
    with mock.patch.object(dataset_read, "CSV_BLOCK_BYTES", block_bytes or 1 << 20), (
            mock.patch.object(dataset_read, "_csv_table", whole) if block_bytes is None else mock.patch.object(
                dataset_read, "BLOCK_ROWS", dataset_read.BLOCK_ROWS)):
        try:
            out = load_tables(paths["tx"], paths["tk"], paths["cu"], config=config, **kwargs)
        except DataError as exc:
            out = str(exc)
    return out, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tx_rows=st.lists(st.tuples(st.sampled_from(_CSV_IDS), st.sampled_from(_CSV_AMOUNTS), st.integers(0, 5),
                                  st.sampled_from(["o1", "o2", "", "fee"])), min_size=1, max_size=14),
       tk_rows=st.lists(st.tuples(st.sampled_from(_CSV_IDS), st.integers(0, 5), st.sampled_from(["", "4", "9", "x"])),
                        min_size=1, max_size=6),
       cu_ids=st.lists(st.sampled_from(_CSV_IDS), min_size=1, max_size=6),
       days=st.sampled_from([_ISO_DAYS, _OTHER_DAYS, _ISO_DAYS[:2] + _OTHER_DAYS[:2]]),
       block_bytes=st.sampled_from([40, 64, 200]), mode=st.sampled_from(["raise", "reject"]), exclude=st.booleans(),
       feature_inputs_only=st.booleans(), long_row=st.sampled_from([None, 3]))
def test_csv_checked_in_blocks_is_checked_as_a_whole(tx_rows, tk_rows, cu_ids, days, block_bytes, mode, exclude,
                                                     feature_inputs_only, long_row, caplog, tmp_path_factory):
    """A CSV file read by Arrow a few bytes at a time and checked block by block gives the tables, rejects (row
    numbers included), exclusion counts, id codes, error messages and warnings of the file read whole by pandas:
    ISO dates, dates day or month first (decided on the whole column), mixed styles, numbers that are and are not
    plain decimals, and a row longer than the header (then the file is read whole)."""
    tmp = tmp_path_factory.mktemp("csv")

    def cell(text: str) -> str:
        return f'"{text}"' if text and (text != text.strip() or "," in text) else text

    tx = ["customer_id,amount,timestamp,order_id,channel"] + [
        ",".join(map(cell, (i, a, days[d % len(days)], o, "web"))) for i, a, d, o in tx_rows]
    if long_row is not None and long_row < len(tx_rows):
        tx[long_row + 1] = "a,1,234.50,2024-01-01,o1,web"
    tk = ["customer_id,opened_at,resolved_at,csat"] + [
        ",".join(map(cell, (i, days[d % len(days)], days[(d + 1) % len(days)], c))) for i, d, c in tk_rows]
    cu = ["customer_id,region"] + [f"{cell(i)},north" for i in cu_ids]
    paths = {}
    for name, lines in (("tx", tx), ("tk", tk), ("cu", cu)):
        paths[name] = tmp / f"{name}.csv"
        paths[name].write_text("\n".join(lines) + "\n")
    config = DataConfig(on_bad_rows=mode, exclude={"transactions": {"order_id": ["fee"]}} if exclude else {})
    (whole, whole_log), (blocks, blocks_log) = (_csv_load(paths, config, n, caplog,
                                                          feature_inputs_only=feature_inputs_only)
                                                for n in (None, block_bytes))
    assert blocks_log == whole_log
    if isinstance(whole, str):
        assert blocks == whole
        return
    for name in ("transactions", "tickets", "customers"):
        pd.testing.assert_frame_equal(getattr(blocks, name), getattr(whole, name), check_exact=True)
        codes = blocks.id_codes(name)
        assert codes.distinct.take(codes.codes).to_pylist() == getattr(blocks, name)["customer_id"].tolist()
    pd.testing.assert_frame_equal(blocks.rejects, whole.rejects, check_exact=True)
    assert blocks.excluded == whole.excluded


def test_csv_blocks_read_a_file_in_pieces_as_pandas_reads_it(tmp_path):
    """Arrow's reader in small blocks: several blocks, together the text pandas reads (quoted commas and line
    breaks, blank cells and lines, a BOM, a gzipped file, another delimiter and encoding); a row of another
    width than the header stops it with CsvNotBlockwise."""
    import gzip

    from churnguard import _io

    text = '\ufeffid;note;n\n1;"a;b";2\n\n2;"line\nbreak";\n3;;4.5\n4;é;\n' * 20
    for name, data, dialect in (("semi.csv", text.encode("latin-1", "replace"), _io.read.CsvDialect("latin-1", ";")),
                                ("semi.csv.gz", gzip.compress(text.encode()), _io.read.CsvDialect("utf-8", ";"))):
        path = tmp_path / name
        path.write_bytes(data)
        names = ["id", "note", "n"]
        pieces = list(_io.read.csv_blocks(path, names, ["id", "note", "n"], dialect, block_bytes=64))
        assert len(pieces) > 1
        read = pd.concat(pieces, ignore_index=True)
        expected = _io.read.csv_rows(lambda path=path: _io.read.open_bytes(path), names, dialect=dialect).drop(
            columns=_io.read.EXTRA_FIELDS)
        pd.testing.assert_frame_equal(read, expected, check_exact=True)
    (tmp_path / "ragged.csv").write_text("id,n\n1,2\n3,4,5\n")
    with pytest.raises(_io.read.CsvNotBlockwise):
        list(_io.read.csv_blocks(tmp_path / "ragged.csv", ["id", "n"], ["id", "n"]))


def test_a_csv_chunk_is_read_by_arrow_as_pandas_reads_it(tmp_path):
    """The partitioned engine reads a CSV chunk (its byte range behind the header line) with Arrow's reader:
    the table pandas' reading gives (quoted separators and line breaks, blank cells and lines, a BOM, another
    delimiter and encoding, a column the file lacks); a chunk with a row longer than the header is read by
    pandas, which keeps that row's text."""
    import pyarrow as pa

    from churnguard import _io
    from churnguard.engines.partitions import Chunk, read_chunk

    rows = '1;"a;b";2\n\n2;"line\nbreak";\n3;;4.5\n4;é;\n' * 20
    for name, data, dialect in (("semi.csv", ("id;note;n\n" + rows).encode("latin-1"), _io.read.CsvDialect("latin-1", ";")),
                                ("bom.csv", ("\ufeffid;note;n\n" + rows).encode(), _io.read.CsvDialect("utf-8-sig", ";"))):
        path = tmp_path / name
        path.write_bytes(data)
        header = data[:data.index(b"\n") + 1]
        chunk = Chunk(str(path), "csv", start=len(header), stop=-1, header=header, keep=("id",), dialect=dialect)
        got = read_chunk(chunk, ("n", "id", "missing"))
        frame = _io.read.csv_rows(lambda path=path: _io.read.open_bytes(path), ["id", "note", "n"], ["id", "n"], ("id",),
                             dialect)
        expected = pa.Table.from_pandas(frame, preserve_index=False).select(["n", "id", _io.read.EXTRA_FIELDS])
        assert got.select(["n", "id"]).equals(expected.select(["n", "id"]))
        assert got.column(_io.read.EXTRA_FIELDS).to_pylist() == expected.column(_io.read.EXTRA_FIELDS).to_pylist()
        assert got.column(_io.read.EXTRA_FIELDS).type == pa.null()  # no row longer than the header: no buffer held
        assert got.column("missing").null_count == len(got) == 80
    ragged = b"id,n\n1,2\n3,4,5\n"
    (tmp_path / "ragged.csv").write_bytes(ragged)
    got = read_chunk(Chunk(str(tmp_path / "ragged.csv"), "csv", start=5, stop=-1, header=b"id,n\n", keep=("id",)),
                     ("id", "n"))
    assert got.to_pydict() == {"id": ["1", "3"], "n": ["2", None], _io.read.EXTRA_FIELDS: [None, "3,4,5"]}



@pytest.mark.parametrize("pad", range(0, 64, 7))
def test_a_csv_chunk_with_line_breaks_in_quotes_at_block_cuts_is_read_as_pandas_reads_it(pad):
    """Arrow's blocks are cut at line ends first: where a cut falls inside a quoted value that parse fails (it
    is checked here that it does, for these rows) and the rows are read again through the quotes; the table is
    pandas' either way (``pad`` moves the cuts)."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pcsv

    from churnguard import _io

    names = ["id", "note", "n"]
    rows = ("x" * pad + ',"p",1\n' + "".join(f'{i},"a\nb\nc,{i}\nd\n",{i}\n' for i in range(60))).encode()
    plain_cuts = _io.read._arrow_csv_options(names, names, _io.read.UTF8, 256, header=False, newlines_in_values=False)
    with pytest.raises(pa.ArrowInvalid):
        pcsv.read_csv(pa.BufferReader(rows), **plain_cuts)
    expected = _io.read.csv_rows(lambda: io.BytesIO(b"id,note,n\n" + rows), names)
    for block_bytes in (256, None):  # None: Arrow's blocks of 1 MB, no cut inside the text
        got = _io.read.csv_table(pa.py_buffer(rows), names, ["n", "note"], block_bytes=block_bytes)
        assert got.to_pydict() == {"n": expected["n"].tolist(), "note": expected["note"].tolist()}
        assert len(got) == 61

@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.builds(
    "{}-{:02d}-{:02d}{}".format, st.sampled_from(["1677", "1678", "1970", "2000", "2023", "2024", "2261", "2262"]),
    st.integers(0, 13), st.integers(0, 32),
    st.sampled_from(["", " 00:00:00", "T23:59:59", " 24:00:00", " 12:60:00", " 12:00:60", " 07:08:09.5",
                     " 07:08:09.123456789", " 07:08:09.1234567891", "Z", " 07:08"]))), min_size=1, max_size=6))
def test_iso_dates_of_one_width_parse_as_pandas_parses_them(values):
    """The fast reading of ISO 8601 columns gives pandas' dates, or leaves the column to pandas."""
    text = dataset.text_cells(pd.Series(values, dtype="str"))
    expected = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    parsed = dataset_values._iso_fixed_width(text)
    if parsed is None:  # pandas reads it
        return
    assert expected.notna().sum() == text.notna().sum()  # read fast only when every value is a date
    pd.testing.assert_series_equal(parsed, expected.astype("datetime64[ns, UTC]"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["-0", "0", "+1", "-.5", "1.", ".", "-", "1e3", "inf", "nan",
                                                      " 2", "3 ", "1,5", "0.1", "123456789012345.6", "-00", "-0.0",
                                                      "-0.", "+0", "-000000000000000"]),
                          st.floats(allow_nan=False, allow_infinity=False).map(repr),
                          st.decimals(places=4, allow_nan=False, allow_infinity=False).map(str)),
                min_size=1, max_size=6))
def test_plain_decimals_read_as_pandas_reads_them(values):
    """The fast reading of plain decimals gives pandas' numbers (bit for bit, a negative zero too), or leaves the
    column to pandas; for text as validation reads it (missing values pd.NA) and as pandas' ``str`` holds it
    (missing values NaN, where pandas reads a negative zero otherwise)."""
    for text in (dataset.text_cells(pd.Series(values, dtype="str")), pd.Series(values, dtype="str")):
        expected = pd.to_numeric(text, errors="coerce").astype("float64").to_numpy()
        numbers = dataset_values._numbers(text).to_numpy()
        assert numbers.tobytes() == expected.tobytes() or (np.isnan(numbers) == np.isnan(expected)).all() and (
            numbers[~np.isnan(numbers)].tobytes() == expected[~np.isnan(expected)].tobytes())


def test_a_negative_zero_in_a_column_of_whole_numbers_is_read_by_arrow_as_zero():
    """Of text as validation reads it, a column of whole numbers with a -0 (customers' NPS) is read by Arrow,
    not left to pandas, and its -0 is 0 as pandas reads it; beside a decimal point, -0.0."""
    from unittest import mock

    for values, sign in ((["-0", None, "7", "-00"], False), (["-0", "7.5", None], True)):
        text = dataset.text_cells(pd.Series(values, dtype="str"))
        with mock.patch.object(pd, "to_numeric", side_effect=AssertionError("left to pandas")):
            numbers = dataset_values._numbers(text).to_numpy()
        assert numbers[0] == 0
        assert np.signbit(numbers[0]) == sign


def test_dictionary_codes_of_ids_of_one_width_are_arrows_encoding_of_the_text():
    """Chunks whose ids all have one width are hashed as fixed-size bytes: the distinct ids (text, in order of
    first appearance) and each row's code are those of Arrow's encoding of the text, also with an empty chunk
    first and a sliced one; ids of two widths or a missing id are encoded as text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from churnguard._io.codes import fixed_bytes

    ids = pa.array(["C03", "C01", "C03", "C04", "C02", "C01"], type=pa.large_string())
    cases = {"one width": [ids.slice(0, 0), ids.slice(0, 3), ids.slice(2, 4), ids],
             "two widths": [ids, pa.array(["C0001", "C03"], type=pa.large_string())],
             "missing": [ids, pa.array(["C01", None], type=pa.large_string())],
             "none": [ids.slice(0, 0)]}
    for name, chunks in cases.items():
        fixed = fixed_bytes(pa.chunked_array(chunks, type=pa.large_string()))
        assert (fixed is not None) == (name == "one width"), name
        values, codes = dataset.dictionary_codes(pa.chunked_array(chunks, type=pa.large_string()))
        want = pc.dictionary_encode(pa.chunked_array(chunks, type=pa.large_string()))
        want_values = want.chunks[-1].dictionary if want.num_chunks else pa.array([], type=pa.large_string())
        values.validate(full=True)
        assert values.type == pa.large_string(), name
        assert values.equals(want_values), name
        assert codes.dtype == np.int32, name
        assert codes.tolist() == [-1 if i is None else i for c in want.chunks for i in c.indices.to_pylist()], name


@pytest.mark.parametrize("seconds", [0, 1, 86_399, 86_400, 1_764_633_599.999, 1_764_633_600, 9_000_000_000.5])
def test_latest_plausible_date_is_tomorrow_by_the_utc_clock(monkeypatch, seconds):
    """The server's bound on a request's day: the UTC day after the clock's, the day changing at midnight UTC."""
    from datetime import UTC, datetime, timedelta

    monkeypatch.setattr(dataset_tables.time, "time", lambda: seconds)
    assert dataset.latest_plausible_date() == datetime.fromtimestamp(seconds, UTC).date() + timedelta(days=1)
    assert dataset.latest_plausible_day() == pd.Timestamp(dataset.latest_plausible_date())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(["NULL", " n/a", "#N/A", "12.0", " C1 ", "None!"])),
                min_size=1, max_size=5))
def test_ids_sent_one_by_one_are_read_as_a_file_reads_them(ids):
    """``clean_id_list`` (POST /predict) gives ``clean_ids`` of the ids (files), with or without its shortcut."""
    import pyarrow as pa

    from churnguard.dataset import clean_id_list, clean_ids

    assert clean_id_list(ids) == clean_ids(pa.array(ids, type=pa.string())).to_pylist()


def test_repeated_rows_without_an_order_id_are_shown_without_it(caplog):
    """A repeated row's missing order id is left out of the notice's example (it once stopped the command)."""
    tx = pd.DataFrame({"customer_id": ["a", "a", "b"], "timestamp": ["2025-01-01 10:00"] * 3, "amount": ["1", "1", "2"],
                       "order_id": [None, None, "x"]})
    with caplog.at_level(logging.WARNING):
        validate_tables(tx, config=DataConfig())
    assert ("transactions: 1 transaction row repeats an earlier row in every column, e.g. a, 2025-01-01 10:00:00, "
            "1.0; kept") in caplog.text
