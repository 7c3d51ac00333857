"""Features parity on the local engine: ``churnguard features`` in memory and in customer partitions give the
file, ``attrs``, rejects and "today" of one reference (``load_tables`` + ``build_features`` on the whole
input, written once here), for every case:

- ``iso``: ISO dates, the events table, an explicit as_of with customers whose activity is only after it;
- ``parquet``: the same tables as Parquet files of several row groups, no as_of;
- ``day-first``: dates written ``%d/%m/%Y %H:%M`` and read with ``data.date_format``, no as_of ("today");
- ``bad-reject``: bad rows in every table (transactions, tickets, customers, events) set aside
  (``on_bad_rows: reject``), no as_of: the last transaction is one of them, so "today" is not the last date the
  files hold;
- ``bad-raise``: the same files under ``on_bad_rows: raise``: the same error, counted over the whole files.

The Dask engine's features are compared with the local engine in ``tests/test_parity.py`` and
``tests/test_events_engines.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.config import load_config
from churnguard.dataset import DataError, load_tables
from churnguard.demo import generate_demo_data
from churnguard.engines import build_features_from_files
from churnguard.features import build_features, to_day
from churnguard.scoring.score import unscored_rejects, unseen_customers

pytestmark = pytest.mark.slow

NAMES = ("transactions", "tickets", "customers", "events")
DAY_FIRST = "%d/%m/%Y %H:%M"
DATES = {"timestamp", "opened_at", "first_response_at", "resolved_at", "signup_date"}
# engine: (partitions, buckets built at once)
ENGINES = {"in-memory": (None, 2), "partitioned": (3, 2), "partitioned, one at a time": (3, 1)}
AS_OF = "2025-06-30"
LATE = ["late-1", "late-2", "late-3"]  # customers whose only activity is after AS_OF


def _frames() -> dict[str, pd.DataFrame]:
    """A demo world with events, plus three customers active only after AS_OF (a purchase, a ticket, events)."""
    demo = generate_demo_data(300, seed=11, events=True)
    frames = {n: getattr(demo, n) for n in NAMES}
    ts = pd.Timestamp
    late_tx = frames["transactions"].iloc[:2].assign(customer_id=["late-1", "late-2"], order_id=["L1", "L2"],
                                                   timestamp=[ts("2025-07-03 10:00"), ts("2025-08-01 09:30")])
    late_tk = frames["tickets"].iloc[:1].assign(customer_id="late-3", ticket_id="LT1", opened_at=ts("2025-07-10"),
                                               first_response_at=ts("2025-07-10 12:00"), resolved_at=pd.NaT)
    late_cu = frames["customers"].iloc[:1].assign(customer_id="late-3", signup_date=ts("2025-07-09"))
    late_ev = frames["events"].iloc[:2].assign(customer_id=["late-1", "late-3"],
                                               timestamp=[ts("2025-07-02 08:00"), ts("2025-07-11 08:00")])
    for name, late in (("transactions", late_tx), ("tickets", late_tk), ("customers", late_cu),
                       ("events", late_ev)):
        frames[name] = pd.concat([frames[name], late], ignore_index=True)
    return frames


def _write(frames: dict[str, pd.DataFrame], directory: Path, date_format: str | None = None,
           bad: bool = False, parquet: bool = False) -> dict[str, Path]:
    directory.mkdir(parents=True)
    paths = {}
    for name, frame in frames.items():
        if parquet:  # text as Parquet holds it (the events' ids, types, channels and sessions read as dictionaries)
            paths[name] = directory / f"{name}.parquet"
            frame.to_parquet(paths[name], index=False, row_group_size=5000)
            continue
        out = frame.copy()
        if date_format is not None:
            for col in DATES & set(out.columns):
                out[col] = out[col].dt.strftime(date_format)
        out = out.astype(object)
        if bad:  # a bad value in a feature column of rows spread over the file (so over the partitions)
            column = {"transactions": "amount", "tickets": "opened_at", "customers": "signup_date",
                      "events": "timestamp"}[name]
            rows = np.linspace(3, len(out) - 1, 4).astype(int)
            out.loc[rows, column] = ["not a value", "x", "??", "13/13/13"]
            if name == "transactions":  # the last transaction is set aside: "today" is the day before it
                out = pd.concat([out, out.iloc[:1].assign(timestamp="2026-01-15 10:00:00", amount="n/a")])
        paths[name] = directory / f"{name}.csv"
        out.to_csv(paths[name], index=False)
    return paths


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, tuple[dict[str, Path], object, str | None, pd.Timestamp]]:
    """Each case's files, config and as_of, and the last day with a (usable) transaction."""
    root, frames, cfg = tmp_path_factory.mktemp("features-engines"), _frames(), load_config()
    last = frames["transactions"]["timestamp"].max().normalize()
    day_first = cfg.model_copy(update={"data": cfg.data.model_copy(update={"date_format": DAY_FIRST})})
    bad = _write(frames, root / "bad", bad=True)
    return {
        "iso": (_write(frames, root / "iso"), cfg, AS_OF, last),
        "parquet": (_write(frames, root / "parquet", parquet=True), cfg, None, last),
        "day-first": (_write(frames, root / "day-first", DAY_FIRST), day_first, None, last),
        "bad-reject": (bad, cfg.model_copy(update={"data": cfg.data.model_copy(update={"on_bad_rows": "reject"})}),
                       None, last),
        "bad-raise": (bad, cfg, None, last),
    }


def _reference(files: dict[str, Path], cfg, as_of: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The features and rejects of the whole input in memory, as the library's own functions give them."""
    tables = load_tables(*(files[n] for n in NAMES[:3]), config=cfg.data, events=files["events"],
                         feature_inputs_only=True)
    day = to_day(as_of) if as_of is not None else tables.last_date()
    feats = build_features(tables, day, cfg.features)
    return feats, unscored_rejects(tables.rejects, unseen_customers(tables, feats["customer_id"]), day)


def _run(files: dict[str, Path], cfg, as_of: str | None, engine: str, out: Path):
    from churnguard.engines import local

    partitions, at_once = ENGINES[engine]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local, "BUCKETS_AT_ONCE", at_once)
        return build_features_from_files("local", *(files[n] for n in NAMES[:3]), events=files["events"],
                                         as_of=as_of, out=out, config=cfg, partitions=partitions)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", ["iso", "parquet", "day-first", "bad-reject"])
def test_features_and_rejects_equal_the_whole_input_in_memory(cases, case, engine, tmp_path):
    files, cfg, as_of, last = cases[case]
    want, want_rejects = _reference(files, cfg, as_of)
    result = _run(files, cfg, as_of, engine, tmp_path / "features.parquet")
    got = pd.read_parquet(tmp_path / "features.parquet")
    assert len(want) > 250
    assert "sessions_30d" in want  # the events' features
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs == want.attrs
    assert set(got.attrs) == {"population", "lifespan_years"}
    pd.testing.assert_frame_equal(result.rejects.reset_index(drop=True), want_rejects.reset_index(drop=True),
                                  check_exact=True)
    assert (result.rows, result.columns) == (len(want), want.shape[1] - 2)
    assert result.left_out == int((want_rejects["table"] == "all").sum())
    if case == "iso":  # the late customers are left out and reported, on both engines
        assert not set(LATE) & set(got["customer_id"])
        assert set(LATE) <= set(result.rejects.loc[result.rejects["table"] == "all", "customer_id"])
    else:  # "today": the last day with a transaction, as validation reads the timestamps
        assert set(got["as_of"]) == {last}
    if case == "bad-reject":
        assert set(result.rejects["table"]) == {"transactions", "tickets", "customers", "events"}


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_rows_under_raise_stop_with_the_counts_of_the_whole_files(cases, engine, tmp_path):
    files, cfg, as_of, _ = cases["bad-raise"]
    with pytest.raises(DataError) as want:
        _reference(files, cfg, as_of)
    with pytest.raises(DataError) as got:
        _run(files, cfg, as_of, engine, tmp_path / "features.parquet")
    assert str(got.value) == str(want.value)
    assert "5 of 3,649 transactions row(s) cannot be used" in str(got.value)
    assert not (tmp_path / "features.parquet").exists()


def test_buckets_built_at_once_are_given_in_order_and_an_error_drops_the_ones_not_begun():
    """Two buckets at a time on threads of their own, results in bucket order; when one fails, the error comes
    out, the buckets not yet begun never run and none is still at work once it has (the work directory is removed
    after)."""
    import threading
    import time

    from churnguard.engines.local import _each_bucket

    started, running, lock = [], [], threading.Lock()

    def job(b: int) -> int:
        with lock:
            started.append(b)
            running.append(b)
        time.sleep(0.05)
        with lock:
            running.remove(b)
        if b == 2:
            raise ValueError("bucket 2 is bad")
        return b * 10

    assert list(_each_bucket(lambda b: b * 10, 7)) == [0, 10, 20, 30, 40, 50, 60]
    results = _each_bucket(job, 40)
    assert [next(results), next(results)] == [0, 10]
    with pytest.raises(ValueError, match="bucket 2 is bad"):
        next(results)
    assert running == []
    assert sorted(started) == list(range(len(started)))  # begun in order
    assert 3 <= len(started) <= 6  # up to 2's partner, then at most one more on each thread before the error came out


def test_the_command_builds_by_partition_and_writes_the_same_file(cases, tmp_path):
    files = cases["iso"][0]
    args = ["features", "-t", files["transactions"], "--tickets", files["tickets"], "--customers",
            files["customers"], "--events", files["events"], "--as-of", AS_OF]
    said = {}
    for name, extra in (("memory", []), ("parts", ["--partitions", "4"])):
        result = CliRunner().invoke(app, [str(a) for a in [*args, "-o", tmp_path / f"{name}.csv", *extra]])
        assert result.exit_code == 0, result.output
        said[name] = "".join(result.output.split()).replace("".join(str(tmp_path).split()), "").replace(name, "OUT")
    assert "customersleftout:noactivityonorbeforeas_of(seetherejects)" in said["memory"]  # (wrapped lines joined)
    assert said["parts"] == said["memory"]
    assert (tmp_path / "parts.csv").read_bytes() == (tmp_path / "memory.csv").read_bytes()
    assert (tmp_path / "parts.rejects.csv").read_bytes() == (tmp_path / "memory.rejects.csv").read_bytes()
    assert not list(tmp_path.glob(".churnguard-work*"))  # the buckets' work files are gone


def _rows_ask_for_three_partitions(local, monkeypatch, files, read) -> list[int]:
    """Make the files' rows (as ``read`` reads them) ask for 3 partitions and their size for 1; the partition
    counts ``local._split`` is then called with are appended to the list returned."""
    rows = sum(len(read(files[n])) for n in NAMES)
    monkeypatch.setattr(local, "_BYTES_PER_PARTITION", 2**40)
    monkeypatch.setattr(local, "FEATURES_ROWS_PER_PARTITION", rows // 3 + 1)
    splits, real = [], local._split
    monkeypatch.setattr(local, "_split", lambda spec, n, work: splits.append(n) or real(spec, n, work))
    return splits


def test_parquet_rows_that_ask_for_more_partitions_are_split_once(cases, tmp_path, monkeypatch):
    """The rows a Parquet file's metadata records (the rows the census counts) decide the partitions before
    the one pass: when they ask for more than the files' size, the chunks are split once, into those, and the
    features are those of the whole input; ``score`` splits the same way."""
    from churnguard.engines import local

    files, cfg, as_of, _ = cases["parquet"]
    want, want_rejects = _reference(files, cfg, as_of)
    splits = _rows_ask_for_three_partitions(local, monkeypatch, files, pd.read_parquet)
    census, real_census = [], local._census_split
    monkeypatch.setattr(local, "_census_split",
                        lambda sources, config, n, work: census.append(n) or real_census(sources, config, n, work))
    result = local.features_files(**{n: files[n] for n in NAMES}, out=tmp_path / "features.parquet",
                                  data_config=cfg.data, feature_config=cfg.features, as_of=as_of)
    assert census == [3]
    assert splits == []  # not read and split again
    got = pd.read_parquet(tmp_path / "features.parquet")
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs == want.attrs
    pd.testing.assert_frame_equal(result.rejects.reset_index(drop=True), want_rejects.reset_index(drop=True),
                                  check_exact=True)


@pytest.mark.parametrize("case", ["iso", "parquet"])
def test_large_inputs_are_built_by_partition_without_being_asked(cases, case, tmp_path, monkeypatch):
    """Without ``partitions``, input files over one partition's budget (the features': rows a Parquet file's
    metadata records, else the files' size) are built in that many partitions, the file and rejects those of the
    build in memory; inputs within it are built in memory."""
    from churnguard.engines import local

    files, cfg, as_of, _ = cases[case]
    want, want_rejects = _reference(files, cfg, as_of)
    asked = []
    real = local.features_files
    monkeypatch.setattr(local, "features_files", lambda **kw: asked.append(kw["partitions"]) or real(**kw))
    build_features_from_files("local", *(files[n] for n in NAMES[:3]), events=files["events"], as_of=as_of,
                              out=tmp_path / "small.parquet", config=cfg)
    assert asked == []  # a few thousand rows, a few hundred KB: in memory
    size = sum(files[n].stat().st_size for n in NAMES)
    rows = sum(len(pd.read_parquet(files[n])) for n in NAMES) if case == "parquet" else 0
    monkeypatch.setattr(local, "_BYTES_PER_PARTITION", size // 2 + 1 if case == "iso" else 2**40)
    monkeypatch.setattr(local, "FEATURES_ROWS_PER_PARTITION", rows // 3 + 1 if case == "parquet" else 2**40)
    result = build_features_from_files("local", *(files[n] for n in NAMES[:3]), events=files["events"],
                                       as_of=as_of, out=tmp_path / "features.parquet", config=cfg)
    assert asked == [2 if case == "iso" else 3]
    got = pd.read_parquet(tmp_path / "features.parquet")
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs == want.attrs
    pd.testing.assert_frame_equal(result.rejects.reset_index(drop=True), want_rejects.reset_index(drop=True),
                                  check_exact=True)
    build_features_from_files("local", *(files[n] for n in NAMES[:3]), events=files["events"], as_of=as_of,
                              out=tmp_path / "one.parquet", config=cfg, partitions=1)
    assert asked == [2 if case == "iso" else 3]  # one partition asked for: all at once, in memory
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one.parquet"), want, check_exact=True)


def _late_bad_dates(cases, root: Path) -> dict[str, Path]:
    """The ISO case's files with two bad timestamps near the end of the transactions (a day after today and a
    value that is no date), under ``on_bad_rows: reject``: read in small chunks, the chunks before theirs hold
    only dates validation reads as the census parsed them."""
    files = cases["iso"][0]
    tx = pd.read_csv(files["transactions"], dtype=str, keep_default_na=False)
    tx.loc[[len(tx) - 40, len(tx) - 7], "timestamp"] = ["2099-06-01 10:00:00", "not a date"]
    root.mkdir()
    tx.to_csv(root / "transactions.csv", index=False)
    return {**files, "transactions": root / "transactions.csv"}


def _long_row(cases, root: Path) -> dict[str, Path]:
    """The ISO case's files with an unquoted 1,234.50 in a middle row of the transactions: read in small
    chunks, that row's chunk is read by pandas (its rows' extra fields as text), the others by Arrow."""
    files = cases["iso"][0]
    lines = files["transactions"].read_text().splitlines()
    fields = lines[len(lines) // 2].split(",")
    fields[2] = "1,234.50"  # amount
    lines[len(lines) // 2] = ",".join(fields)
    root.mkdir()
    (root / "transactions.csv").write_text("\n".join(lines) + "\n")
    return {**files, "transactions": root / "transactions.csv"}


@pytest.mark.parametrize("case", ["iso", "day-first", "bad-reject", "late-bad-dates", "long-row"])
def test_files_of_many_chunks_are_read_once_and_give_the_features_of_the_whole_input(cases, case, tmp_path,
                                                                                      monkeypatch):
    """Read in chunks of 20 KB, each chunk's census and split are one pass: ISO dates are carried parsed into
    the pieces; a chunk whose dates are not all sure (``late-bad-dates``: after today, no date) has the chunks
    before it split again with the text; a column in a decided style is read again for its census in that
    style; a chunk with a row longer than the header (``long-row``) is read by pandas, beside chunks read by
    Arrow. The file, ``attrs`` and rejects (the bad dates and the long row quoted as written) are those of the
    whole input in memory."""
    from functools import partial

    from churnguard.engines import partitions as parts

    if case == "late-bad-dates":
        files, (_, cfg, as_of, _) = _late_bad_dates(cases, tmp_path / "in"), cases["bad-reject"]
    elif case == "long-row":
        files, (_, cfg, as_of, _) = _long_row(cases, tmp_path / "in"), cases["bad-reject"]
    else:
        files, cfg, as_of, _ = cases[case]
    want, want_rejects = _reference(files, cfg, as_of)
    monkeypatch.setattr(parts, "plan_inputs", partial(parts.plan_inputs, block_bytes=20_000))
    reads, carried = [], []
    real_read, real_split = parts.read_chunk, parts.census_and_split
    monkeypatch.setattr(parts, "read_chunk", lambda chunk, columns: reads.append((chunk, columns)) or real_read(
        chunk, columns))
    monkeypatch.setattr(parts, "census_and_split", lambda *a: carried.append(real_split(*a)[0].parsed) or real_split(
        *a))
    result = _run(files, cfg, as_of, "partitioned", tmp_path / "features.parquet")
    got = pd.read_parquet(tmp_path / "features.parquet")
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs == want.attrs
    pd.testing.assert_frame_equal(result.rejects.reset_index(drop=True), want_rejects.reset_index(drop=True),
                                  check_exact=True)
    chunks = [chunk for chunk, columns in reads if len(columns) > 1]
    n_tx = sum(chunk.path == str(files["transactions"]) for chunk in set(chunks))
    assert n_tx > 10  # many chunks
    if case == "iso":  # every chunk read once; the transactions' timestamps carried parsed
        assert len(chunks) == len(set(chunks)) == len(reads)
        assert ("timestamp",) in carried
    if case == "long-row":
        assert want_rejects.loc[want_rejects["column"] == "(whole row)", "value"].str.contains(",1,234.50,").sum() == 1
    if case == "late-bad-dates":
        bad = want_rejects[want_rejects["column"] == "timestamp"]
        assert set(bad["value"]) == {"2099-06-01 10:00:00", "not a date"}
        # the chunks before the bad ones split again, and the timestamps read again for their style's census
        assert len(chunks) > len(set(chunks))
        assert sum(columns == ("timestamp",) for _, columns in reads) == n_tx


def test_the_buckets_are_built_with_arrow_allocating_from_malloc_once_the_input_is_split(cases, tmp_path,
                                                                                          monkeypatch):
    """The split runs on Arrow's default pool; the buckets are validated and their features finished and
    merged with Arrow allocating from glibc's malloc (its system pool); the default pool is back after the
    build, and the features are those of the whole input."""
    import pyarrow as pa

    from churnguard import _io
    from churnguard.engines import local
    from churnguard.engines import partitions as parts

    if _io.cores._mallopt() is None:
        pytest.skip("glibc's malloc only")
    files, cfg, as_of, _ = cases["iso"]
    want, _ = _reference(files, cfg, as_of)
    default = pa.default_memory_pool().backend_name
    assert default != "system"
    pools: dict[str, set] = {"split": set(), "validate": set(), "merge": set()}

    def seen(step, fn):
        return lambda *a, **k: pools[step].add(pa.default_memory_pool().backend_name) or fn(*a, **k)

    monkeypatch.setattr(parts, "census_and_split", seen("split", parts.census_and_split))
    monkeypatch.setattr(parts, "validate_partition", seen("validate", parts.validate_partition))
    monkeypatch.setattr(local, "_merge_parts", seen("merge", local._merge_parts))
    local.features_files(**{n: files[n] for n in NAMES}, out=tmp_path / "features.parquet", data_config=cfg.data,
                         feature_config=cfg.features, as_of=as_of, partitions=3)
    assert pools == {"split": {default}, "validate": {"system"}, "merge": {"system"}}
    assert pa.default_memory_pool().backend_name == default
    got = pd.read_parquet(tmp_path / "features.parquet")
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs == want.attrs


@pytest.mark.parametrize(("backend", "released"), [("system", 0), ("mimalloc", 1), ("jemalloc", 1)])
def test_memory_freed_to_malloc_is_kept_for_the_next_bucket(backend, released, monkeypatch):
    """Between buckets, the memory Arrow's own allocators keep is handed back to the system, not the memory
    freed to glibc's malloc (the system pool): that is kept for the next bucket's arrays."""
    import pyarrow as pa

    from churnguard.engines import local

    class Pool:
        backend_name, calls = backend, 0

        def release_unused(self):
            Pool.calls += 1

    monkeypatch.setattr(pa, "default_memory_pool", Pool)
    local._release()
    assert Pool.calls == released


def test_rows_that_ask_for_more_partitions_than_the_files_size_are_split_again(cases, tmp_path, monkeypatch):
    """The one pass splits into the partitions the files' size asks for; when the rows the census counted ask
    for more, the chunks are split again into those, and the features are those of the whole input."""
    from churnguard.engines import local

    files, cfg, as_of, _ = cases["iso"]
    want, want_rejects = _reference(files, cfg, as_of)
    splits = _rows_ask_for_three_partitions(local, monkeypatch, files, pd.read_csv)
    result = local.features_files(**{n: files[n] for n in NAMES}, out=tmp_path / "features.parquet",
                                  data_config=cfg.data, feature_config=cfg.features, as_of=as_of)
    assert splits == [3]
    got = pd.read_parquet(tmp_path / "features.parquet")
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs == want.attrs
    pd.testing.assert_frame_equal(result.rejects.reset_index(drop=True), want_rejects.reset_index(drop=True),
                                  check_exact=True)


@pytest.fixture(scope="module")
def emptied(tmp_path_factory) -> dict[str, Path]:
    """The ``iso`` world with three transactions whose customer id is a null marker, and a customer ``gone-1``
    whose two transactions both have a bad amount (no other row of theirs anywhere)."""
    frames = _frames()
    tx = frames["transactions"]
    extra = tx.iloc[:5].astype(object).assign(customer_id=["NULL", " n/a ", "#N/A", "gone-1", "gone-1"],
                                              order_id=["N1", "N2", "N3", "G1", "G2"])
    extra.loc[extra.index[3:], "amount"] = "twelve"
    zeros = tx.iloc[:1].astype(object).assign(customer_id="0042", order_id="Z1")  # the customers table's 42
    copies = tx.iloc[[10, 10, 20]].astype(object)  # row 10 three times, row 20 twice: 3 copies
    frames["transactions"] = pd.concat([tx.astype(object), extra, zeros, copies], ignore_index=True)
    frames["customers"] = pd.concat([frames["customers"], frames["customers"].iloc[:1].assign(customer_id="42")],
                                    ignore_index=True)
    return _write(frames, tmp_path_factory.mktemp("emptied") / "files")


@pytest.mark.parametrize("engine", ENGINES)
def test_null_marker_ids_and_customers_with_every_row_set_aside_are_reported_alike(emptied, engine, tmp_path,
                                                                                     caplog):
    """A customer id written NULL, N/A or #N/A is a missing id (a bad row), not a customer called "NULL"; a
    customer whose every row is set aside is counted in the summary; ids unknown to the other table but for
    leading zeros (0042, 42) stay two customers, with a notice. The same on every engine."""
    cfg = load_config()
    reject = cfg.model_copy(update={"data": cfg.data.model_copy(update={"on_bad_rows": "reject"})})
    want, want_rejects = _reference(emptied, reject, AS_OF)
    caplog.clear()
    result = _run(emptied, reject, AS_OF, engine, tmp_path / "features.parquet")
    zeros = [r.getMessage() for r in caplog.records if "leading zeros" in r.getMessage()]
    assert zeros == [(f"1 customer id of {emptied['transactions']} unknown to {emptied['customers']} matches one of "
                     "its ids but for leading zeros, e.g. '0042' and '42': they are read as different customers; "
                     "if they are the same, write the ids the same way in both files")]
    assert {"0042", "42"} <= set(pd.read_parquet(tmp_path / "features.parquet")["customer_id"])
    repeated = [r.getMessage() for r in caplog.records if "in every column" in r.getMessage()]
    tx = pd.read_csv(emptied["transactions"], dtype=str, keep_default_na=False)
    shown = sorted("{}, {}, {}, {}".format(*[str(v) for v in (row.customer_id, pd.Timestamp(row.timestamp),
                                                              float(row.amount), row.order_id)])
                   for row in tx.iloc[[10, 10, 20]].itertuples())
    assert repeated == [(f"{emptied['transactions']}: 3 transaction rows repeat an earlier row in every column, "
                         f"e.g. {'; '.join(shown)}; kept, and counted as purchases of their own (if the file holds "
                         "some rows twice, remove the copies)")]
    got = pd.read_parquet(tmp_path / "features.parquet")
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    pd.testing.assert_frame_equal(result.rejects.reset_index(drop=True), want_rejects.reset_index(drop=True),
                                  check_exact=True)
    assert not {"NULL", "n/a", "#N/A", "gone-1"} & set(got["customer_id"])
    marked = result.rejects[result.rejects["reason"].str.contains("null marker")]
    assert marked["value"].tolist() == ["NULL", "n/a", "#N/A"]
    assert marked["customer_id"].isna().all()
    assert set(result.rejects.loc[result.rejects["customer_id"] == "gone-1", "column"]) == {"amount"}
    assert result.emptied == 1
    assert "; 1 customer with every row set aside, so without features (see the rejects)" in result.summary()
    with pytest.raises(DataError, match=r"'customer_id': 3 row\(s\) are empty: written as a null marker"):
        _run(emptied, cfg, AS_OF, engine, tmp_path / "raised.parquet")
