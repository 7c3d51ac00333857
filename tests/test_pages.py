"""The retention team's pages: the data behind them on tiny hand-made runs, and the real pages in headless
Chromium against the real server on 127.0.0.1."""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from churnguard.config import load_playbook
from churnguard.serving import charts
from churnguard.serving.page_data import (
    PageSources,
    check_sources,
    csv_chunks,
    load_run,
    movement,
    page_rows,
    parse_query,
)
from tests.live_server import serve

TOKEN = "a-page-token-of-32-characters-xx"


def _tiny(as_of: str = "2025-06-30") -> pd.DataFrame:
    """Five customers; c2 and c4 tie on probability, c5 has none (lost)."""
    return pd.DataFrame({
        "customer_id": ["c3", "c1", "c2", "c5", "c4"], "as_of": as_of,
        "lifecycle_stage": ["active", "at_risk", "lapsing", "lost", "active"],
        "churn_probability": [0.2, 0.9, 0.5, np.nan, 0.5],
        "risk_band": ["low", "high", "medium", "lost", "medium"],
        "value_tier": ["standard", "vip", "standard", "standard", "vip"], "clv": [10.0, 500.0, 80.0, 0.0, 300.0],
        "reason_1": ["r", "no purchase for 140 days", "", "no churn probability", ""],
        "reason_2": "", "reason_3": "",
        "action": ["no_action", "vip_personal_outreach", "re_engagement", "win_back_lost", "re_engagement"],
        "action_cost": [0.0, 25.0, 3.0, 10.0, 3.0], "expected_value": [0.0, 110.0, 1.0, -10.0, 12.0],
        "selected": [False, True, True, False, True], "control_group": [False, False, True, False, False],
        "model_version": "2025-06-30-abc",
    })


@pytest.fixture
def tiny_run(tmp_path):
    old = _tiny("2025-03-31").assign(churn_probability=[0.1, 0.95, 0.2, 0.7, np.nan],
                                     risk_band=["low", "high", "low", "high", "lost"])
    both = pd.concat([old.iloc[:4], _tiny()])  # the file holds two runs: the latest is shown; c4 is new
    both.to_csv(tmp_path / "s.csv", index=False)
    old.iloc[:4].to_csv(tmp_path / "old.csv", index=False)
    return load_run(tmp_path / "s.csv", tmp_path / "old.csv")


def test_the_latest_run_is_sorted_filtered_and_paged(tiny_run):
    assert str(tiny_run.as_of.date()) == "2025-06-30"
    assert len(tiny_run.frame) == 5
    assert tiny_run.choices("risk_band") == ["high", "medium", "low", "lost"]  # riskiest first
    # by probability, highest first; the tie c2/c4 in id order; no probability last
    rows, matched, pages = page_rows(tiny_run, parse_query({}), size=2)
    assert (list(rows["customer_id"]), matched, pages) == (["c1", "c2"], 5, 3)
    rows, _, _ = page_rows(tiny_run, parse_query({"page": "3"}), size=2)
    assert list(rows["customer_id"]) == ["c5"]
    rows, _, _ = page_rows(tiny_run, parse_query({"dir": "asc"}), size=5)
    assert list(rows["customer_id"]) == ["c3", "c2", "c4", "c1", "c5"]
    rows, matched, _ = page_rows(tiny_run, parse_query({"risk_band": "medium", "value_tier": "vip"}))
    assert (list(rows["customer_id"]), matched) == (["c4"], 1)
    rows, _, _ = page_rows(tiny_run, parse_query({"group": "control"}))
    assert list(rows["customer_id"]) == ["c2"]
    rows, _, _ = page_rows(tiny_run, parse_query({"group": "contacted", "sort": "expected_value"}))
    assert list(rows["customer_id"]) == ["c1", "c4"]
    rows, matched, pages = page_rows(tiny_run, parse_query({"risk_band": "nonsense"}))
    assert (matched, pages) == (0, 1)
    assert tiny_run.counts() == {"customers": 5, "bands": {"high": 1, "medium": 2, "low": 1, "lost": 1},
                                 "selected": 3, "control": 1, "contacted": 2}


def test_a_bad_address_falls_back_to_the_defaults():
    q = parse_query({"page": "-3", "sort": "reason_1; drop", "dir": "sideways", "group": "x", "risk_band": ""})
    assert (q.page, q.sort, q.descending, q.group, dict(q.filters)) == (1, "churn_probability", True, "", {})
    assert parse_query({"page": "9" * 40}).page == 1
    assert parse_query({"page": "7"}).params(page=2) == {"sort": "churn_probability", "dir": "desc", "page": "2"}


def test_the_csv_holds_the_filtered_rows_with_the_file_columns(tiny_run, tmp_path):
    out = tmp_path / "got.csv"
    out.write_bytes(b"".join(csv_chunks(tiny_run, parse_query({"risk_band": "medium"}), chunk=1)))
    got = pd.read_csv(out)
    assert list(got.columns) == list(_tiny().columns)
    assert list(got["customer_id"]) == ["c2", "c4"]
    assert got["churn_probability"].tolist() == [0.5, 0.5]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_ids_a_spreadsheet_would_run_are_shown_as_they_are_and_quoted_in_the_csv(tmp_path, suffix):
    """score's CSV quotes a cell a spreadsheet would run as a formula ('+44 20, '=cmd); the pages show and look
    up the id as it is (+44 20: its purchases are found under that id) and the downloaded list quotes it again,
    from a Parquet file (never quoted) too. The CSV file's quotes used to be shown, and the download of a
    Parquet file's rows was not quoted."""
    from churnguard._io.spreadsheet import spreadsheet_safe
    from churnguard._io.write import write_table

    scores = _tiny().assign(customer_id=["+44 20", "c1", "=cmd|x", "c5", "-4"])
    write_table(spreadsheet_safe(scores) if suffix == ".csv" else scores, tmp_path / f"s{suffix}")
    run = load_run(tmp_path / f"s{suffix}")
    assert sorted(run.ids) == sorted(["+44 20", "c1", "=cmd|x", "c5", "-4"])
    got = pd.read_csv(io.BytesIO(b"".join(csv_chunks(run, parse_query({"sort": "customer_id", "dir": "asc"})))),
                      dtype=str)
    assert got["customer_id"].tolist() == ["'+44 20", "'-4", "'=cmd|x", "c1", "c5"]


def test_the_csv_writes_ranks_as_whole_numbers_as_score_did(tmp_path):
    """risk_rank is empty for a customer without a probability, so pandas reads the column as floats: the
    downloaded list wrote 2.0 for score's 2."""
    _tiny().assign(risk_rank=[3, 1, 2, None, 4]).to_csv(tmp_path / "s.csv", index=False)
    got = b"".join(csv_chunks(load_run(tmp_path / "s.csv"), parse_query({"sort": "customer_id", "dir": "asc"})))
    ranks = pd.read_csv(io.BytesIO(got), dtype=str, keep_default_na=False)["risk_rank"].tolist()
    assert ranks == ["1", "2", "3", "4", ""]


def test_movement_since_the_previous_run(tiny_run):
    frame = tiny_run.frame.set_index("customer_id", drop=False)
    assert movement(tiny_run, frame.loc["c2"]) == pytest.approx(
        {"seen": True, "old_probability": 0.2, "old_band": "low", "delta": 0.3})
    assert movement(tiny_run, frame.loc["c4"]) == {"seen": False}
    lost = movement(tiny_run, frame.loc["c5"])
    assert lost["old_band"] == "high"
    assert np.isnan(lost["delta"])


def test_files_are_checked_before_the_server_starts(tmp_path):
    _tiny().drop(columns=["action"]).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(ValueError, match="--scores: .* no column\\(s\\) action"):
        check_sources(PageSources(tmp_path / "s.csv"))
    _tiny().to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(ValueError, match="--readout: .*nothing.csv is not a file"):
        check_sources(PageSources(tmp_path / "s.csv", readout=tmp_path / "nothing.csv"))
    _tiny().assign(as_of="6/30/2025").to_csv(tmp_path / "copy.csv", index=False)  # a spreadsheet's copy
    with pytest.raises(ValueError, match=r"copy.csv: column 'as_of' has 5 day\(s\) not written YYYY-MM-DD"):
        load_run(tmp_path / "copy.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="--transactions: .*empty.csv is empty"):
        check_sources(PageSources(tmp_path / "s.csv", transactions=tmp_path / "empty.csv"))
    twice = pd.concat([_tiny(), _tiny().iloc[:1]])
    twice.to_csv(tmp_path / "twice.csv", index=False)
    with pytest.raises(ValueError, match="listed twice"):
        load_run(tmp_path / "twice.csv")


def test_the_purchases_chart_counts_each_month_up_to_the_scoring_day():
    buys = pd.DataFrame({"timestamp": pd.to_datetime(["2025-01-05", "2025-01-20", "2025-03-02", "2025-08-01"]),
                         "amount": [10.0, 5.0, 7.5, 4.0]})
    months = charts.monthly_purchases(buys, pd.Timestamp("2025-06-30"))
    assert [str(m) for m in months["month"]] == [f"2025-0{m}" for m in range(1, 9)]
    assert months["amount"].tolist() == [15.0, 0, 7.5, 0, 0, 0, 0, 4.0]
    assert months["orders"].tolist() == [2, 0, 1, 0, 0, 0, 0, 1]
    svg = charts.purchases_chart(months, pd.Timestamp("2025-06-30"))
    assert svg.count('class="bar"') == 6
    assert svg.count('class="bar after"') == 2
    assert "<title>2025-01: 15.00 in 2 order(s)</title>" in svg
    assert 'class="marker"' in svg


def test_the_why_of_an_action_is_its_playbook_rule():
    from churnguard.serving.pages import _why

    playbook = load_playbook()
    rules = {a.name: a for a in playbook.actions}
    assert _why(rules["vip_personal_outreach"], playbook) == (
        "The first rule of the playbook that matches this customer (rule 3 of 11): risk band high, value tier vip.")
    assert _why(rules["service_recovery"], playbook).endswith("risk band high or medium, signal bad support.")
    assert _why(rules["no_action"], playbook).startswith("No earlier rule of the playbook matched")


# --- the real server and the real page ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(trained, tmp_path_factory):
    """Two scoring runs of the demo customers, the later one's campaign read-out, and the tables as CSV."""
    from churnguard._io.write import write_table
    from churnguard.demo import write_demo_data
    from churnguard.model import ChurnModel
    from churnguard.reporting.monitoring import campaign_readout
    from churnguard.scoring import score_tables

    tmp = tmp_path_factory.mktemp("pages")
    model = ChurnModel.load(trained["result"].model_path)
    out = {"model": trained["result"].model_path, **write_demo_data(trained["demo"], tmp / "data")}
    for name, day in (("previous", "2025-03-31"), ("scores", "2025-06-30")):
        result = score_tables(model, trained["tables"], day, load_playbook(), budget=400, control_fraction=0.3)
        out[name] = write_table(result.scores, tmp / f"{name}.csv")
    readout = campaign_readout(result.scores, trained["tables"].transactions)
    out["readout"] = write_table(readout, tmp / "readout.csv")
    out["tmp"] = tmp
    return out


def _args(files, *names: str) -> list[str]:
    args = ["--model", str(files["model"])]
    for name in names:
        args += [f"--{name}", str(files[name])]
    return args


def _scores(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"customer_id": str}, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the system's, driven by Playwright). Skipped, saying why, only when Chromium or
    Playwright is absent; under CI (``CI`` set) their absence fails instead."""
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright, why = None, "Playwright is not installed: pip install -e '.[dev]'"
    else:
        why = None if chromium else "no chromium on this machine: apt-get install -y chromium"
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the browser tests: {why}")
        print(f"skipping the browser tests: {why}", file=sys.stderr)
        pytest.skip(why)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Where the tests leave their screenshots (``CHURNGUARD_SCREENSHOTS`` to keep them)."""
    where = os.environ.get("CHURNGUARD_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.slow
def test_the_page_in_chromium(files, browser, shots):
    scores = _scores(files["scores"])
    high = scores[scores["risk_band"] == "high"].sort_values(
        ["churn_probability", "customer_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    with serve(_args(files, "scores", "previous", "readout", "transactions", "tickets"), files["tmp"]) as (base, _):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requested = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(base + "/")
        assert "Scored as of 2025-06-30" in page.locator(".run").inner_text()
        assert f"{len(scores):,} customers" in page.locator(".counts").inner_text()
        # the keyboard: stepping through a filter's values waits for the Show button
        page.get_by_label("Lifecycle stage").focus()
        page.keyboard.press("ArrowDown")
        assert page.url == base + "/"
        page.get_by_role("button", name="Show").press("Enter")
        page.wait_for_url(re.compile(r"lifecycle_stage="))
        page.get_by_role("link", name="Clear filters").click()
        page.wait_for_url(base + "/")
        # the mouse: picking a band applies it
        page.get_by_label("Risk band").select_option("high")
        page.wait_for_url(re.compile(r"risk_band=high"))
        assert set(page.locator("td.col-risk_band").all_inner_texts()) == {"high"}
        assert f"{len(high):,} customer(s) match" in page.locator("#matched").inner_text()
        shown = page.locator("td.col-customer_id").all_inner_texts()
        assert shown == list(high["customer_id"][:50])
        page.screenshot(path=shots / "list.png", full_page=True)

        with page.expect_download() as download:
            page.get_by_role("link", name=re.compile("Download these")).click()
        got = _scores(Path(download.value.path()))
        # the same values; risk_rank reads as floats from the whole file only (its empty cells are not high)
        pd.testing.assert_frame_equal(got, high, check_dtype=False)

        page.get_by_role("link", name=high["customer_id"][0], exact=True).click()
        page.wait_for_url(re.compile("/customers/"))
        first = high.iloc[0]
        reasons = [first[f"reason_{k}"] for k in (1, 2, 3) if isinstance(first[f"reason_{k}"], str)]
        assert page.locator("#reasons li").all_inner_texts() == reasons
        assert page.locator("#action").inner_text() == first["action"].replace("_", " ")
        chart = page.locator("#purchases-chart svg")
        assert chart.locator("rect.bar").count() > 0
        box = chart.bounding_box()
        assert box is not None
        assert box["width"] > 300
        assert box["height"] > 80
        assert page.locator("#movement").inner_text()
        page.screenshot(path=shots / "customer.png", full_page=True)

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        for path in ("/", page.url.removeprefix(base), "/campaign"):
            phone.goto(base + path)
            # nothing wider than the phone: wide tables scroll in their own box
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390, path
        phone.screenshot(path=shots / "campaign_phone.png", full_page=True)
        phone.close()
        page.close()
    assert requested
    assert all(url.startswith(base + "/") for url in requested)


@pytest.mark.slow
def test_pages_answer_errors_with_a_page_and_never_load_from_outside(files):
    with serve(_args(files, "scores"), files["tmp"]) as (base, _):
        for path in ("/", "/?page=abc&sort=nope&risk_band=%3Cscript%3E", "/customers/C0000001"):
            r = httpx.get(base + path)
            assert r.status_code in (200, 404), path
            assert "default-src 'none'" in r.headers["content-security-policy"]
            assert r.headers["referrer-policy"] == "no-referrer"
            urls = re.findall(r"(?:href|src|action)=\"([^\"]*)\"", r.text)
            assert urls, path
            assert all(u.startswith(("/", "#")) for u in urls), urls
            assert "<script>" not in r.text
        missing = httpx.get(base + "/customers/nobody%3Cb%3E")
        assert missing.status_code == 404
        assert "Customer not found" in missing.text
        assert "Traceback" not in missing.text
        assert "nobody<b>" not in missing.text
        r = httpx.get(base + "/campaign")
        assert r.status_code == 404
        assert "without --readout" in r.text
        assert "without <code>--transactions</code>" in httpx.get(
            base + "/customers/" + _scores(files["scores"])["customer_id"][0]).text
        assert httpx.get(base + "/health").json() == {"status": "ok"}  # the API is still there


@pytest.mark.slow
def test_sign_in_once_with_the_token(files, browser):
    with serve([*_args(files, "scores"), "--token", TOKEN], files["tmp"]) as (base, _):
        r = httpx.get(base + "/")
        assert (r.status_code, r.headers["location"]) == (303, "/login")
        assert httpx.get(base + "/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert httpx.post(base + "/login", json={"token": TOKEN}).status_code == 415
        context = browser.new_context()
        page = context.new_page()
        page.goto(base + "/")
        assert page.url == base + "/login"
        page.get_by_label("Access token").fill("wrong-" + TOKEN)
        page.get_by_role("button", name="Sign in").click()
        assert "not right" in page.get_by_role("alert").inner_text()
        page.get_by_label("Access token").fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(base + "/")
        assert page.locator("h1").inner_text() == "At-risk list"
        (cookie,) = context.cookies()
        assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
        assert TOKEN not in cookie["value"]
        jar = {cookie["name"]: cookie["value"]}
        assert httpx.get(base + "/export.csv", cookies=jar).status_code == 200
        assert httpx.get(base + "/model", cookies=jar).status_code == 401  # the API still wants its header
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(base + "/login")
        assert context.cookies() == []
        context.close()


@pytest.mark.slow
def test_paging_over_a_large_scores_file_sends_one_page(files):
    scores = _scores(files["scores"])
    copies = -(-200_000 // len(scores))
    big = pd.concat([scores.assign(customer_id=scores["customer_id"] + f"-{k:03d}") for k in range(copies)],
                    ignore_index=True).iloc[:200_000]
    path = files["tmp"] / "big.parquet"
    big.to_parquet(path)
    started = time.monotonic()
    with serve(["--model", str(files["model"]), "--scores", str(path)], files["tmp"]) as (base, proc):
        ready = time.monotonic() - started
        sizes, times = [], []
        for query in ("", "?page=2", "?risk_band=high&sort=expected_value&page=3", "?page=999999",
                      "?sort=customer_id&dir=asc&page=1500"):
            t0 = time.monotonic()
            r = httpx.get(base + "/" + query, timeout=30)
            times.append(time.monotonic() - t0)
            assert r.status_code == 200
            assert r.text.count('<td class="col-customer_id">') == 50
            sizes.append(len(r.content))
        assert max(sizes) < 80_000, sizes  # one page, whatever the file's size
        assert "page 4,000 of 4,000" in httpx.get(base + "/?page=999999").text
        high = int((big["risk_band"] == "high").sum())
        t0 = time.monotonic()
        csv = httpx.get(base + "/export.csv?risk_band=high", timeout=60).text
        export = time.monotonic() - t0
        assert csv.count("\n") == high + 1
        rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{proc.pid}/status").read_text()).group(1)) // 1024
    print(f"200,000 rows: ready in {ready:.1f} s, pages of {min(sizes):,}-{max(sizes):,} bytes in "
          f"{min(times) * 1000:.0f}-{max(times) * 1000:.0f} ms, CSV of {high:,} rows in {export:.2f} s, "
          f"server RSS {rss} MB", file=sys.stderr)


def test_templates_escape_what_they_show():
    from churnguard.serving.pages import _page

    r = _page(404, "error.html", title="Customer <b>x</b>", message="a & b", state=None)
    body = r.body.decode()
    assert r.status_code == 404
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>Customer &lt;b&gt;x&lt;/b&gt;</h1>" in body
    assert "<p>a &amp; b</p>" in body
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.slow
def test_the_customer_page_draws_the_churn_curve(trained, trained_curve, tmp_path):
    from churnguard._io.write import write_table
    from churnguard.model import ChurnModel
    from churnguard.scoring import score_tables

    model = ChurnModel.load(trained_curve["result"].model_path)
    scores = score_tables(model, trained["tables"], "2025-06-30", load_playbook()).scores
    path = write_table(scores, tmp_path / "curve.parquet")
    row = scores[scores["churn_probability"].notna()].iloc[0]
    with serve(["--model", str(trained_curve["result"].model_path), "--scores", str(path)], tmp_path) as (base, _):
        text = httpx.get(f"{base}/customers/{row['customer_id']}").text
    assert "<h2 id=\"curve-h\">Churn curve</h2>" in text
    assert '<polyline points="' in text
    for days in (30, 60, 90, 180):
        assert f"<tr><td>{days} days</td><td class=\"num\">{row[f'churn_probability_{days}d']:.1%}</td></tr>" in text


def test_serve_checks_the_page_files_before_starting(tmp_path):
    from typer.testing import CliRunner

    from churnguard.cli import app

    model = str(tmp_path / "m.zip")
    r = CliRunner().invoke(app, ["serve", "--model", model, "--previous", str(tmp_path / "old.csv")])
    assert r.exit_code == 2
    assert "--previous add(s) to the pages, which need --scores" in r.output
    r = CliRunner().invoke(app, ["serve", "--model", model, "--scores", str(tmp_path / "none.csv")])
    assert r.exit_code == 2
    assert "none.csv is not a file" in r.output
    # a missing playbook stopped the server's start with a traceback (exit 3)
    r = CliRunner().invoke(app, ["serve", "--model", model, "--playbook", str(tmp_path / "none.yaml")])
    assert r.exit_code == 2
    assert "playbook file not found" in r.output
    assert "Traceback" not in r.output


@pytest.mark.slow
def test_serve_reads_the_page_data_before_starting_and_stops_with_its_message(files, tmp_path):
    """Data the pages cannot show (a customer listed twice, days a spreadsheet rewrote) stopped the server's
    start in uvicorn's traceback (exit 3); it stops the command with the message and exit 2, as other bad input
    does, before the server starts."""
    from typer.testing import CliRunner

    from churnguard.cli import app

    scores = _scores(files["scores"])
    bad = {"twice.csv": (pd.concat([scores, scores.iloc[:1]]), "a customer is listed twice in the run of 2025-06-30"),
           "copy.csv": (scores.assign(as_of="6/30/2025"), "column 'as_of' has")}
    for name, (frame, message) in bad.items():
        frame.to_csv(tmp_path / name, index=False)
        r = CliRunner().invoke(app, ["serve", "--model", str(files["model"]), "--scores", str(tmp_path / name),
                                     "--port", "1"])  # a port no test server can take, were it to start
        assert r.exit_code == 2, r.output
        assert message in " ".join(r.output.split()), r.output
        assert "Traceback" not in r.output
        assert "serving" not in r.output  # stopped before the server's start


@pytest.mark.slow
@pytest.mark.parametrize("db", ["duckdb", "postgresql"])
def test_the_pages_read_their_tables_from_a_database(files, db, request):
    """``serve --scores URL`` (and the other page tables): the same pages and the same CSV as from the files."""
    from churnguard._io.read import read_table
    from churnguard.sources import DbSource, parse_source, write_tables

    names = ("scores", "previous", "readout", "transactions", "tickets")
    if db == "duckdb":
        src = DbSource("duckdb", str(files["tmp"] / "pages.duckdb"), "scores")
    else:
        src = parse_source(request.getfixturevalue("pg_server").url(table="scores"))
    frames = {n: read_table(files[n]) for n in ("transactions", "tickets")}  # as text, as in the files
    frames |= {n: _scores(files[n]) for n in ("scores", "previous")} | {"readout": pd.read_csv(files["readout"])}
    write_tables(src, {f"page_{n}": frames[n] for n in names})
    from_files = ["--model", str(files["model"])] + [a for n in names for a in (f"--{n}", str(files[n]))]
    from_db = ["--model", str(files["model"])]
    from_db += [a for n in names for a in (f"--{n}", str(src.with_table(f"page_{n}")))]
    customer = _scores(files["scores"]).sort_values("churn_probability")["customer_id"].iloc[-1]
    paths = ("/", "/?risk_band=high&sort=expected_value&page=2", f"/customers/{customer}", "/campaign",
             "/export.csv?risk_band=high")
    pages = {}
    for label, args in (("files", from_files), ("db", from_db)):
        with serve(args, files["tmp"]) as (base, _):
            pages[label] = [httpx.get(base + p, timeout=30) for p in paths]
    for path, want, got in zip(paths, pages["files"], pages["db"], strict=True):
        assert want.status_code == got.status_code == 200, path
        assert got.text == want.text, path
    assert "Purchases" in pages["db"][2].text
