"""The synthetic retail world: data contract, consistency, the behaviour it simulates, and writing it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.dataset import validate_tables
from churnguard.demo import DemoData, generate_demo_data, write_demo_data

START, END = pd.Timestamp("2023-01-01"), pd.Timestamp("2025-12-31")
PERIOD_END = END + pd.Timedelta(days=1)  # exclusive
TX_COLUMNS = ["customer_id", "timestamp", "amount", "order_id", "quantity", "category", "channel", "discount"]
TK_COLUMNS = ["ticket_id", "customer_id", "opened_at", "first_response_at", "resolved_at", "channel", "csat"]
CU_COLUMNS = ["customer_id", "signup_date", "loyalty_member", "loyalty_points", "nps", "region"]


@pytest.fixture(scope="module")
def small() -> DemoData:
    return generate_demo_data(300, seed=1)


@pytest.fixture(scope="module")
def big() -> DemoData:
    return generate_demo_data(5000, seed=2)


def _purchases(data: DemoData) -> pd.DataFrame:
    return data.transactions[data.transactions["amount"] > 0]


def _half_years(data: DemoData) -> pd.DataFrame:
    """One row per customer who bought in the half year before one of four cuts, with what happened.

    ``gone``: no purchase at all after the cut. ``bad_support``: a ticket in that half year was answered after
    more than 24 h or never, is unresolved, or got CSAT <= 2.
    """
    buy, tk, rows = _purchases(data), data.tickets, []
    for cut in pd.to_datetime(["2024-01-01", "2024-07-01", "2025-01-01", "2025-07-01"]):
        window = cut - pd.DateOffset(months=6), cut, "left"
        active = pd.Index(buy.loc[buy["timestamp"].between(*window), "customer_id"].unique())
        recent = tk[tk["opened_at"].between(*window)]
        slow = (recent["first_response_at"] - recent["opened_at"]) > pd.Timedelta(hours=24)
        bad = recent["first_response_at"].isna() | slow | recent["resolved_at"].isna() | (recent["csat"] <= 2)
        per_customer = bad.groupby(recent["customer_id"]).any()
        rows.append(pd.DataFrame({
            "customer_id": active,
            "gone": ~active.isin(buy.loc[buy["timestamp"] >= cut, "customer_id"]),
            "had_ticket": active.isin(per_customer.index),
            "bad_support": active.isin(per_customer.index[per_customer]),
        }))
    out = pd.concat(rows, ignore_index=True)
    return out.merge(data.customers[["customer_id", "loyalty_member", "nps"]], on="customer_id")


def test_same_seed_same_data_other_seed_other_data():
    a, b = generate_demo_data(300, seed=4), generate_demo_data(300, seed=4)
    c = generate_demo_data(300, seed=5)
    for name in ("transactions", "tickets", "customers"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert not a.transactions.equals(c.transactions)
    assert not a.customers.equals(c.customers)


def test_columns_and_dtypes(small):
    tx, tk, cu = small.transactions, small.tickets, small.customers
    assert list(tx.columns) == TX_COLUMNS
    assert list(tk.columns) == TK_COLUMNS
    assert list(cu.columns) == CU_COLUMNS
    for df, text in ((tx, ["customer_id", "order_id", "category", "channel"]),
                     (tk, ["ticket_id", "customer_id", "channel"]), (cu, ["customer_id", "region"])):
        for column in text:
            assert df[column].dtype == "str", column
            assert df[column].notna().all(), column
    for df, dates in ((tx, ["timestamp"]), (tk, ["opened_at", "first_response_at", "resolved_at"]),
                      (cu, ["signup_date"])):
        for column in dates:
            assert pd.api.types.is_datetime64_dtype(df[column]), column
    assert tx["amount"].dtype == "float64"
    assert tx["discount"].dtype == "float64"
    assert tx["quantity"].dtype == "int64"
    assert tk["csat"].dtype == "float64"
    assert cu["loyalty_member"].dtype == "bool"
    assert cu["loyalty_points"].dtype == "int64"
    assert cu["nps"].dtype == "float64"


def test_the_demo_data_passes_the_data_contract(small, config):
    tables = validate_tables(small.transactions, small.tickets, small.customers, config=config.data)
    assert len(tables.transactions) == len(small.transactions)
    assert len(tables.tickets) == len(small.tickets)
    assert tables.rejects.empty


def test_transactions_values(small):
    tx = small.transactions
    assert tx["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert tx["order_id"].is_unique
    assert tx["timestamp"].between(START, PERIOD_END, "left").all()
    assert (tx["timestamp"].dt.normalize() != tx["timestamp"]).mean() > 0.99  # times of day, not just dates
    assert (tx["amount"] == tx["amount"].round(2)).all()
    assert (tx["amount"] != 0).all()
    assert tx["discount"].between(0, 0.5).all()
    assert set(tx["category"]) <= {"apparel", "home", "beauty", "electronics", "grocery", "toys"}
    assert set(tx["channel"]) == {"web", "store", "app"}
    store_hours = tx.loc[(tx["channel"] == "store") & (tx["amount"] > 0), "timestamp"].dt.hour
    assert store_hours.between(9, 20).all()


def test_refunds_are_negative_later_rows_of_an_earlier_order(small):
    tx = small.transactions
    refunds, orders = tx[tx["amount"] < 0], tx[tx["amount"] > 0]
    assert refunds["order_id"].str.startswith("R").all()
    assert orders["order_id"].str.startswith("O").all()
    assert (refunds["quantity"] < 0).all()
    assert (orders["quantity"] >= 1).all()
    assert 0.005 < len(refunds) / len(orders) < 0.1
    # every refund follows a purchase of the same customer that was at least as large
    first_buy = orders.groupby("customer_id")["timestamp"].min()
    assert (refunds["timestamp"].to_numpy() > first_buy[refunds["customer_id"]].to_numpy()).all()
    biggest = orders.groupby("customer_id")["amount"].max()
    assert (-refunds["amount"].to_numpy() <= biggest[refunds["customer_id"]].to_numpy()).all()


def test_tickets_are_consistent(small):
    tk, cu = small.tickets, small.customers
    assert tk["ticket_id"].is_unique
    assert tk["customer_id"].isin(cu["customer_id"]).all()
    assert tk["opened_at"].between(START, PERIOD_END, "left").all()
    for column in ("first_response_at", "resolved_at"):
        done = tk[column].notna()
        assert (tk.loc[done, column] >= tk.loc[done, "opened_at"]).all()
        assert (tk.loc[done, column] < PERIOD_END).all()  # nothing is known after the end of the period
    resolved = tk["resolved_at"].notna()
    assert tk.loc[resolved, "first_response_at"].notna().all()
    assert (tk.loc[resolved, "resolved_at"] >= tk.loc[resolved, "first_response_at"]).all()
    assert tk["csat"].dropna().between(1, 5).all()
    assert tk.loc[~resolved, "csat"].isna().all()
    assert set(tk["channel"]) == {"email", "chat", "phone"}


def test_customers_are_consistent(small):
    cu, tx, tk = small.customers, small.transactions, small.tickets
    assert cu["customer_id"].is_unique
    assert len(cu) == 300
    assert tx["customer_id"].isin(cu["customer_id"]).all()
    assert (cu.loc[~cu["loyalty_member"], "loyalty_points"] == 0).all()
    assert (cu["loyalty_points"] >= 0).all()
    assert cu["nps"].dropna().between(0, 10).all()
    assert (cu["signup_date"] == cu["signup_date"].dt.normalize()).all()
    signup = cu.set_index("customer_id")["signup_date"]
    first_buy = tx.groupby("customer_id")["timestamp"].min()
    assert (signup[first_buy.index] <= first_buy).all()
    first_ticket = tk.groupby("customer_id")["opened_at"].min()
    assert (signup[first_ticket.index] <= first_ticket).all()


def test_shares_of_loyalty_nps_answers_and_signups(big):
    cu = big.customers
    assert 0.25 < cu["loyalty_member"].mean() < 0.35
    assert 0.35 < cu["nps"].notna().mean() < 0.45
    signup_year = cu["signup_date"].dt.year
    assert 0.2 < (signup_year < 2023).mean() < 0.4  # existing customers give history from day one
    assert (signup_year == 2023).sum() > (signup_year == 2024).sum() > (signup_year == 2025).sum() > 0


def test_realistic_volumes_seasonality_and_support_times(big):
    buy = _purchases(big)
    per_customer = buy.groupby("customer_id").size().reindex(big.customers["customer_id"], fill_value=0)
    assert 5 <= per_customer.median() <= 15
    assert per_customer.quantile(0.9) > 3 * per_customer.median()  # heterogeneous purchase rates
    by_month = buy.groupby(buy["timestamp"].dt.month).size()
    assert by_month[[11, 12]].mean() > 1.3 * by_month[[6, 7, 8]].mean()
    tk = big.tickets
    hours = (tk["first_response_at"] - tk["opened_at"]).dt.total_seconds() / 3600
    median = hours.groupby(tk["channel"]).median()
    assert median["chat"] < 0.5
    assert median["phone"] < 0.5
    assert 2 < median["email"] < 48
    assert 0.01 < tk["resolved_at"].isna().mean() < 0.2
    csat = tk["csat"].groupby(hours > 24).mean()
    assert csat[True] < csat[False] - 0.5


def test_churn_is_a_learnable_but_not_trivial_share(big):
    """Of the customers who bought in the year before a cut, 25-55% do not buy in the 90 days after it."""
    buy = _purchases(big)
    for cut in pd.to_datetime(["2024-07-01", "2025-01-01", "2025-07-01"]):
        active = buy.loc[buy["timestamp"].between(cut - pd.DateOffset(years=1), cut, "left"), "customer_id"]
        back = buy.loc[buy["timestamp"].between(cut, cut + pd.Timedelta(days=90), "left"), "customer_id"]
        assert 0.25 < (~pd.Index(active.unique()).isin(back)).mean() < 0.55


def test_a_bad_support_experience_makes_customers_leave(big):
    halves = _half_years(big)
    with_tickets = halves[halves["had_ticket"]]
    bad = with_tickets.loc[with_tickets["bad_support"], "gone"]
    good = with_tickets.loc[~with_tickets["bad_support"], "gone"]
    pooled = with_tickets["gone"].mean()
    z = (bad.mean() - good.mean()) / np.sqrt(pooled * (1 - pooled) * (1 / len(bad) + 1 / len(good)))
    assert len(bad) > 300
    assert bad.mean() > 1.5 * good.mean()
    assert z > 4


def test_loyalty_members_and_promoters_leave_less(big):
    halves = _half_years(big)
    by_loyalty = halves.groupby("loyalty_member")["gone"].mean()
    assert by_loyalty[True] < 0.8 * by_loyalty[False]
    promoters, detractors = halves.loc[halves["nps"] >= 9, "gone"], halves.loc[halves["nps"] <= 6, "gone"]
    assert promoters.mean() < 0.8 * detractors.mean()


def test_other_periods_and_bad_arguments():
    data = generate_demo_data(200, seed=3, start="2024-03-15", end="2024-08-10")
    assert data.transactions["timestamp"].between("2024-03-15", "2024-08-11", "left").all()
    assert data.tickets["opened_at"].between("2024-03-15", "2024-08-11", "left").all()
    assert len(data.transactions) > 0
    assert len(generate_demo_data(1, seed=0).customers) == 1
    with pytest.raises(ValueError, match="n_customers"):
        generate_demo_data(0)
    with pytest.raises(ValueError, match="before start"):
        generate_demo_data(10, start="2024-02-01", end="2024-01-01")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_demo_data_round_trips_and_leaves_no_temp_files(small, tmp_path, fmt):
    out = tmp_path / "nested" / "dir"
    paths = write_demo_data(small, out, fmt=fmt)
    assert set(paths) == {"transactions", "tickets", "customers"}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.{fmt}" for name in paths)
    dates = {"transactions": ["timestamp"], "tickets": ["opened_at", "first_response_at", "resolved_at"],
             "customers": ["signup_date"]}
    for name, path in paths.items():
        expected = getattr(small, name)
        if fmt == "csv":
            got = pd.read_csv(path, parse_dates=dates[name], dtype={"customer_id": "str", "order_id": "str"})
            for column in dates[name]:
                got[column] = got[column].astype("datetime64[ns]")
            pd.testing.assert_frame_equal(got, expected, check_dtype=False)
        else:
            pd.testing.assert_frame_equal(pd.read_parquet(path), expected)
    write_demo_data(small, out, fmt=fmt)  # overwriting works too
    assert len(list(out.iterdir())) == 3


def test_write_demo_data_rejects_unknown_formats(small, tmp_path):
    with pytest.raises(ValueError, match="fmt"):
        write_demo_data(small, tmp_path, fmt="xlsx")
    assert list(tmp_path.iterdir()) == []
