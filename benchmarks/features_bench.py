"""Feature-build speed: churnguard's ``build_features`` next to a plain DuckDB query and featuretools DFS.

Measures, each contender in a fresh worker process (so its peak RSS is its own):

(a) churnguard: ``load_tables`` (read + validate the three Parquet files, as ``churnguard features`` reads them:
    only the columns the features use) and ``build_features`` with tickets
    and customers at one ``as_of``. The build is timed three ways: with the population given (as scoring
    does: lifespan, VIP cut-off, BG/NBD parameters and attribute kinds of the model; here ``POPULATION``, the
    values of ``score_bench.py``'s model, so the BG/NBD columns are computed too; reported as "lifespan
    given"), ``estimate_lifespan_years`` alone (what training's default call estimates), and the full default
    ``build_features`` call (no population: lifespan and VIP cut-off estimated from the tables, no BG/NBD
    columns) -- the last only when the estimate alone finished within ``--lifespan-limit`` seconds;
    otherwise its time is reported as the sum of the two parts, a lower bound;
(b) DuckDB: one SQL query over the same transactions Parquet file computing days since the last purchase,
    number of purchases and net spend per customer as of the same day, fetched into pandas -- the practical
    speed limit of one pass over the data;
(c) featuretools deep feature synthesis (transactions -> customers, max_depth 1, count / sum / mean / max / std
    / time_since_last / trend over amount and quantity) with a ``cutoff_time`` at the end of the same day, on a
    random slice of ``--ft-customers`` customers (DFS needs ~1 s per 1,000 customers on this data, so 1M would
    take ~17 min); churnguard and DuckDB are timed again on exactly that slice, so the ratio is like-for-like.

featuretools 1.31 (woodwork 0.31) does not work with pandas 3: pandas 3 no longer caches accessor objects, so
woodwork's ``df.ww.init()`` state is lost at once (``WoodworkNotInitError``). Give it an interpreter with
pandas 2 via ``--ft-python``, e.g.::

    python -m venv /tmp/venv-ft && /tmp/venv-ft/bin/pip install featuretools==1.31.0 "pandas<3" pyarrow

Run from the repository root (the data is generated once and cached, see ``benchmarks/_data.py``)::

    python benchmarks/features_bench.py --ft-python /tmp/venv-ft/bin/python [--customers 1000000]
        [--ft-customers 50000] [--as-of 2025-12-31] [--profile] [--format csv]

Targets: churnguard / DuckDB <= 3x; featuretools / churnguard >= 20x. Nothing fails on a missed target: the
script prints measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _data import add_data_args, data_dir, ensure_data, fmt_mb, machine, peak_rss_mb

_MARK = "@@"  # prefix of a worker's JSON result lines on stdout
# The population scoring passes to the build (``churnguard.scoring.model_population``): the values of the model
# score_bench.py trains (100,000 customers, seed 0). Other values scale CLTV or the BG/NBD columns, not the work.
POPULATION = {"lifespan_years": 4.3705, "vip_cltv_threshold": 1686.4, "horizon_days": 90,
              "bgnbd": {"r": 1.0926, "alpha": 8.1436, "a": 0.39528, "b": 9.9018},
              "attributes": {"region": ["east", "north", "south", "west"]}}


# -- worker side -------------------------------------------------------------------------------------------


def _emit(**record: object) -> None:
    print(_MARK + json.dumps(record, default=str), flush=True)


_CPU: dict[str, float] = {}  # process CPU time at each phase's start


def _start(phase: str) -> float:
    _emit(event="start", phase=phase)
    _CPU[phase] = time.process_time()
    return time.perf_counter()


def _done(phase: str, t0: float, **extra: object) -> None:
    """A phase's wall time and CPU time of the process (all threads; on a shared machine the steadier figure)."""
    _emit(event="done", phase=phase, seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - _CPU[phase],
          peak_rss_mb=peak_rss_mb(), **extra)


def _tables(directory: Path) -> dict[str, Path]:
    """The three files of ``directory``: CSV where it holds CSV files (``--format csv``), else Parquet."""
    suffix = ".csv" if (directory / "transactions.csv").is_file() else ".parquet"
    return {name: directory / f"{name}{suffix}" for name in ("transactions", "tickets", "customers")}


def csv_copy(full: dict[str, Path]) -> Path:
    """The cached Parquet files written as CSV by pyarrow (once), in ``csv/`` beside them."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    out = full["transactions"].parent / "csv"
    if not (out / "done").is_file():
        out.mkdir(exist_ok=True)
        for name, path in full.items():
            pcsv.write_csv(pq.read_table(path), out / f"{name}.csv")
        (out / "done").write_text("")
    return out


def _emit_profile(profiler, phase: str) -> None:
    import io
    import pstats

    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(14)
    _emit(event="profile", phase=phase, text=buf.getvalue())


def worker_churnguard(directory: Path, as_of: str, profile: bool, full_after: float) -> None:
    """Load + validate, build with the population given, the lifespan estimate alone, then the full build."""
    import pandas as pd

    from churnguard.config import load_config
    from churnguard.dataset import load_tables
    from churnguard.features import build_features, estimate_lifespan_years, to_day
    from churnguard.population import Population

    cfg = load_config()
    paths = _tables(directory)
    profiler = None
    if profile:  # by CPU time of the process: on a shared machine wall time mostly measures the others
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    t0 = _start("load_validate")
    import inspect  # as the features command of the checkout reads: only the feature columns read and checked,
    # or (checkouts before that) every column checked and the feature columns kept
    kept = ({"features_only": True} if "features_only" in inspect.signature(load_tables).parameters
            else {"feature_inputs_only": True})
    tables = load_tables(paths["transactions"], paths["tickets"], paths["customers"], config=cfg.data, **kept)
    _done("load_validate", t0, transactions=len(tables.transactions), tickets=len(tables.tickets),
          customers=len(tables.customers))
    if profiler is not None:
        profiler.disable()
        _emit_profile(profiler, "load_validate")
        profiler = cProfile.Profile(time.process_time)
    t0 = _start("build_given_lifespan")
    if profiler is not None:
        profiler.enable()
    feats = build_features(tables, as_of, cfg.features, Population.from_dict(POPULATION))
    if profiler is not None:
        profiler.disable()
    _done("build_given_lifespan", t0, rows=len(feats), features=feats.shape[1] - 2)
    if profiler is not None:
        _emit_profile(profiler, "build_given_lifespan")
    del feats

    # The estimate's inputs, as estimate_lifespan_years computes them (for the record and the extrapolation).
    day = to_day(as_of)
    tx = tables.transactions[tables.transactions["timestamp"] < day + pd.Timedelta(days=1)]
    bought = tx[tx["amount"] > 0]
    age = (day - bought["timestamp"].dt.normalize()).dt.days
    n_last = bought.loc[age < 365, "customer_id"].nunique()
    n_before = bought.loc[(age >= 365) & (age < 730), "customer_id"].nunique()
    del bought, age
    t0 = _start("lifespan_estimate")
    lifespan = estimate_lifespan_years(tx, day, cfg.features)
    _done("lifespan_estimate", t0, lifespan_years=lifespan, n_last_year=n_last, n_year_before=n_before)
    del tx

    t_estimate = time.perf_counter() - t0
    if t_estimate > full_after:
        _emit(event="skipped", phase="build_full", reason=f"the lifespan estimate alone took {t_estimate:.0f} s")
        return
    t0 = _start("build_full")
    feats = build_features(tables, as_of, cfg.features)
    _done("build_full", t0, rows=len(feats), features=feats.shape[1] - 2)


def duckdb_sql(path: Path, as_of: str) -> str:
    """Recency (days since the last purchase day), purchase count and net spend per customer as of ``as_of``."""
    return f"""
        SELECT customer_id,
               date_diff('day', max(CAST("timestamp" AS DATE)) FILTER (WHERE amount > 0), DATE '{as_of}')
                   AS recency_days,
               count(*) FILTER (WHERE amount > 0) AS n_purchases,
               sum(amount) AS net_spend
        FROM {"read_csv" if path.suffix == ".csv" else "read_parquet"}('{path}')
        WHERE "timestamp" < DATE '{as_of}' + INTERVAL 1 DAY
        GROUP BY customer_id
    """


def worker_duckdb(directory: Path, as_of: str, repeat: int) -> None:
    """The RFM query ``repeat`` times into a pandas frame; first run and best run."""
    import duckdb

    con = duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    sql = duckdb_sql(_tables(directory)["transactions"], as_of)
    times, cpu = [], []
    rows = 0
    for _ in range(repeat):
        t0 = _start("rfm_query")
        rows = len(con.execute(sql).df())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - _CPU["rfm_query"])
    _emit(event="done", phase="rfm_query", seconds=times[0], best_seconds=min(times), cpu_seconds=cpu[0], runs=repeat,
          rows=rows, threads=threads, version=duckdb.__version__, peak_rss_mb=peak_rss_mb())


def worker_featuretools(directory: Path, as_of: str) -> None:
    """Load the slice, build the EntitySet, run DFS with a cutoff time at the end of ``as_of``."""
    import pandas as pd

    t0 = _start("ft_import")
    import featuretools as ft

    _done("ft_import", t0, version=ft.__version__, pandas=pd.__version__)
    paths = _tables(directory)
    t0 = _start("ft_load")
    tx = pd.read_parquet(paths["transactions"], columns=["customer_id", "timestamp", "amount", "quantity"])
    cust = pd.read_parquet(paths["customers"], columns=["customer_id"])
    for frame in (tx, cust):
        frame["customer_id"] = frame["customer_id"].astype(object)
    _done("ft_load", t0, transactions=len(tx), customers=len(cust))

    t0 = _start("ft_entityset")
    es = ft.EntitySet("bench")
    es.add_dataframe(dataframe_name="customers", dataframe=cust, index="customer_id")
    es.add_dataframe(dataframe_name="transactions", dataframe=tx, index="row_id", make_index=True,
                     time_index="timestamp")
    es.add_relationship("customers", "customer_id", "transactions", "customer_id")
    _done("ft_entityset", t0)

    cutoff = pd.DataFrame({"customer_id": cust["customer_id"],
                           "time": pd.Timestamp(as_of) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)})
    t0 = _start("ft_dfs")
    matrix, defs = ft.dfs(entityset=es, target_dataframe_name="customers", cutoff_time=cutoff, max_depth=1,
                          agg_primitives=["count", "sum", "mean", "max", "std", "time_since_last", "trend"],
                          trans_primitives=[], verbose=False)
    _done("ft_dfs", t0, rows=len(matrix), features=len(defs))


# -- parent side -----------------------------------------------------------------------------------------


def run_worker(name: str, argv: list[str], *, python: str = sys.executable, time_limit: float,
               phase_limits: dict[str, float] | None = None) -> dict:
    """Run this script as a worker; collect its records. Kill it past ``time_limit`` or a phase's limit."""
    phase_limits = phase_limits or {}
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    records: dict[str, dict] = {}
    profiles: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        cmd = [python, str(Path(__file__).resolve()), "--worker", name, *argv]
        print(f"  running {name} {' '.join(argv)}", flush=True)
        with open(out_path, "wb") as out, open(err_path, "wb") as err:  # the worker's own file descriptions
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        began = time.monotonic()
        current: tuple[str, float] | None = None
        killed = None
        with open(out_path, "rb") as reader:
            pending = b""
            while True:
                finished = proc.poll() is not None
                pending += reader.read()
                *lines, pending = pending.split(b"\n")
                if finished and pending:
                    lines, pending = [*lines, pending], b""
                for raw in lines:
                    line = raw.decode(errors="replace")
                    if not line.startswith(_MARK):
                        continue
                    rec = json.loads(line[len(_MARK):])
                    if rec["event"] == "start":
                        current = (rec["phase"], time.monotonic())
                    elif rec["event"] == "profile":
                        profiles.append(rec["text"])
                    else:
                        records[rec["phase"]] = rec
                        current = None
                if finished:
                    break
                now = time.monotonic()
                if current and current[0] in phase_limits and now - current[1] > phase_limits[current[0]]:
                    killed = (current[0], now - current[1])
                elif now - began > time_limit:
                    killed = (current[0] if current else "(between phases)",
                              now - (current[1] if current else began))
                if killed:
                    proc.kill()
                    proc.wait()
                    records[killed[0]] = {"event": "timeout", "phase": killed[0], "seconds": killed[1]}
                    print(f"  {name}: stopped {killed[0]} after {killed[1]:.0f} s (limit)", flush=True)
                    break
                time.sleep(0.2)
        if proc.returncode not in (0, None) and not killed:
            tail = err_path.read_text(errors="replace")[-2500:]
            print(f"  {name}: worker failed with exit code {proc.returncode}:\n{tail}", file=sys.stderr, flush=True)
            records["error"] = {"event": "error", "text": tail.strip().splitlines()[-1] if tail.strip() else ""}
    for text in profiles:
        print(f"  cProfile of {name} (load_tables, then build_features; top by own CPU time):")
        print("\n".join("    " + ln for ln in text.strip().splitlines()[:30]))
    return records


def make_slice(full: dict[str, Path], n: int, seed: int) -> Path:
    """A random slice of ``n`` customers (all their rows in every table) cached beside the full data."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = full["transactions"].parent / f"slice-{n}-seed{seed}"
    if (out / "done").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    ids = pq.read_table(full["customers"], columns=["customer_id"])["customer_id"]
    pick = np.sort(np.random.default_rng(seed).choice(len(ids), size=n, replace=False))
    chosen = ids.take(pick)
    for name, path in full.items():
        table = pq.read_table(path)
        pq.write_table(table.filter(pc.is_in(table["customer_id"], value_set=chosen)), out / f"{name}.parquet")
    (out / "done").write_text("")
    return out


def _s(rec: dict | None, key: str = "seconds") -> float | None:
    if rec is None or rec.get("event") not in ("done", "timeout"):
        return None
    return rec.get(key)


def _fmt_s(value: float | None, timeout: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"> {value:.1f} s (stopped)" if timeout else f"{value:.2f} s"


def _line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<62} {value:>18}  {note}", flush=True)


def report_churnguard(title: str, recs: dict, kind: str = "Parquet") -> dict[str, float | None]:
    """Print the churnguard worker's phases; return the times used in the ratios."""
    load, given = recs.get("load_validate"), recs.get("build_given_lifespan")
    est, full = recs.get("lifespan_estimate"), recs.get("build_full")
    print(f"churnguard ({title}):")
    if load:
        _line(f"load_tables (read + validate 3 {kind} files)", _fmt_s(_s(load)),
              f"CPU {_fmt_s(load.get('cpu_seconds'))}; {load.get('transactions', 0):,} transactions, "
              f"{load.get('tickets', 0):,} tickets; peak RSS {fmt_mb(load.get('peak_rss_mb', 0))}")
    if given:
        _line("build_features, lifespan given (scoring path)", _fmt_s(_s(given)),
              f"CPU {_fmt_s(given.get('cpu_seconds'))}; {given.get('rows', 0):,} rows x "
              f"{given.get('features', 0)} features; peak RSS {fmt_mb(given.get('peak_rss_mb', 0))}")
    est_timeout = bool(est) and est["event"] == "timeout"
    if est:
        note = (f"{est.get('n_year_before', 0):,} x {est.get('n_last_year', 0):,} customers compared"
                if not est_timeout else "np.isin on object arrays: O(n*m)")
        _line("estimate_lifespan_years alone (added when no lifespan given)", _fmt_s(_s(est), est_timeout), note)
    t_full = _s(full) if full and full["event"] == "done" else None
    full_is_sum = False
    if t_full is None and _s(given) is not None and _s(est) is not None:
        t_full, full_is_sum = _s(given) + _s(est), True
    if t_full is not None:
        if full_is_sum:
            label = "build_features, full default call (= sum of the two above)"
            value = f"> {t_full:.1f} s" if est_timeout else f"~{t_full:.1f} s"
        else:
            label, value = "build_features, full default call", f"{t_full:.2f} s"
        _line(label, value, f"peak RSS {fmt_mb(max(r.get('peak_rss_mb', 0) for r in recs.values()))}")
    return {"load": _s(load), "given": _s(given), "estimate": _s(est), "full": t_full,
            "cpu": (_s(load, "cpu_seconds") or 0) + (_s(given, "cpu_seconds") or 0),
            "full_lower_bound": est_timeout, "pairs": (est or {}).get("n_year_before", 0) * (est or {}).get("n_last_year", 0)}


def report_duckdb(title: str, recs: dict, kind: str = "Parquet") -> float | None:
    q = recs.get("rfm_query")
    if not q or q["event"] != "done":
        print(f"DuckDB ({title}): no result")
        return None
    print(f"DuckDB {q['version']} ({title}, {q['threads']} threads):")
    _line(f"RFM query from {kind} into pandas, first run", _fmt_s(q["seconds"]),
          f"CPU {_fmt_s(q.get('cpu_seconds'))}; best of {q['runs']}: {q['best_seconds']:.2f} s; {q['rows']:,} rows; "
          f"peak RSS {fmt_mb(q['peak_rss_mb'])}")
    return q["seconds"]


def _ratio(num: float | None, den: float | None) -> str:
    return f"{num / den:.1f}x" if num and den else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--as-of", default="2025-12-31", help="feature cut-off day (default: the last day)")
    parser.add_argument("--ft-customers", type=int, default=50_000,
                        help="customers in the slice for featuretools (0: skip featuretools; >= --customers: all)")
    parser.add_argument("--ft-python", default=sys.executable,
                        help="interpreter with featuretools and pandas<3 (default: this one)")
    parser.add_argument("--lifespan-limit", type=float, default=120.0,
                        help="stop timing estimate_lifespan_years after this many seconds (default 120)")
    parser.add_argument("--time-limit", type=float, default=900.0, help="limit per worker process, seconds")
    parser.add_argument("--repeat", type=int, default=3, help="DuckDB query runs (first and best reported)")
    parser.add_argument("--profile", action="store_true", help="cProfile churnguard's load_tables and build on the full data, by CPU time")
    parser.add_argument("--rounds", type=int, default=1,
                        help="DuckDB and churnguard workers on the full data, one after the other, this many times; "
                             "each round's ratios and their median are printed (default 1)")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet",
                        help="read the data as Parquet (default) or as CSV (written once from the Parquet files)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--full-after", type=float, default=120.0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "churnguard":
        return worker_churnguard(args.dir, args.as_of, args.profile, args.full_after)
    if args.worker == "duckdb":
        return worker_duckdb(args.dir, args.as_of, args.repeat)
    if args.worker == "featuretools":
        return worker_featuretools(args.dir, args.as_of)

    print(f"features_bench: {machine()}; as_of {args.as_of}", flush=True)
    full = ensure_data(args.customers, args.seed)
    full_dir = data_dir(args.customers, args.seed)
    if args.format == "csv":
        full_dir = csv_copy(full)
        print(f"CSV copy: {full_dir}", flush=True)
    common = ["--as-of", args.as_of]
    limits = {"time_limit": args.time_limit}

    rounds = []  # (DuckDB first run, churnguard full call, with the lifespan given, load + given) per round
    for r in range(max(args.rounds, 1)):
        if args.rounds > 1:
            print(f"round {r + 1} of {args.rounds}:", flush=True)
        duck_full = run_worker("duckdb", [*common, "--dir", str(full_dir), "--repeat", str(args.repeat)], **limits)
        cg_full = run_worker("churnguard", [*common, "--dir", str(full_dir), "--full-after", str(args.lifespan_limit),
                                            *(["--profile"] if args.profile and r == 0 else [])],
                             phase_limits={"lifespan_estimate": args.lifespan_limit}, **limits)
        if r == 0:
            first = (duck_full, cg_full)
        q, full, given = duck_full.get("rfm_query", {}), cg_full.get("build_full", {}), cg_full.get("build_given_lifespan", {})
        load = cg_full.get("load_validate")
        rounds.append((_s(q), _s(full) if full.get("event") == "done" else None, _s(given),
                       _s(given) + _s(load) if _s(given) and _s(load) else None))
    print()
    title = f"{args.customers:,} customers"
    kind = "CSV" if args.format == "csv" else "Parquet"
    t_duck = report_duckdb(title, first[0], kind)
    duck_cpu = _s(first[0].get("rfm_query"), "cpu_seconds")
    cg = report_churnguard(title, first[1], kind)

    sl: dict[str, float | None] | None = None
    t_ft = t_duck_slice = None
    ft_recs: dict = {}
    if args.ft_customers > 0:
        n = min(args.ft_customers, args.customers)
        slice_dir = full_dir if n == args.customers else make_slice(full, n, args.seed)
        print(f"\nslice for featuretools: {n:,} customers ({slice_dir})", flush=True)
        cg_slice = (cg_full if slice_dir == full_dir else
                    run_worker("churnguard", [*common, "--dir", str(slice_dir), "--full-after", "1e9"], **limits))
        duck_slice = (duck_full if slice_dir == full_dir else
                      run_worker("duckdb", [*common, "--dir", str(slice_dir), "--repeat", str(args.repeat)], **limits))
        ft_recs = run_worker("featuretools", [*common, "--dir", str(slice_dir)], python=args.ft_python, **limits)
        print()
        t_duck_slice = report_duckdb(f"slice of {n:,}", duck_slice)
        sl = report_churnguard(f"slice of {n:,}", cg_slice)
        if "error" in ft_recs:
            print(f"featuretools: failed ({ft_recs['error']['text']}); see --ft-python in the docstring")
        else:
            imp, load = ft_recs.get("ft_import", {}), ft_recs.get("ft_load", {})
            es, dfs = ft_recs.get("ft_entityset"), ft_recs.get("ft_dfs")
            print(f"featuretools {imp.get('version', '?')} (pandas {imp.get('pandas', '?')}, slice of {n:,}):")
            _line("read slice (4 columns)", _fmt_s(_s(load)), f"{load.get('transactions', 0):,} transactions")
            _line("EntitySet (woodwork typing)", _fmt_s(_s(es), bool(es) and es["event"] == "timeout"))
            timeout = bool(dfs) and dfs["event"] == "timeout"
            _line("DFS with cutoff_time, max_depth 1", _fmt_s(_s(dfs), timeout),
                  "" if timeout or not dfs else f"{dfs['rows']:,} rows x {dfs['features']} features; "
                  f"peak RSS {fmt_mb(dfs['peak_rss_mb'])}")
            if _s(es) is not None and _s(dfs) is not None:
                t_ft = _s(es) + _s(dfs)
                _line("EntitySet + DFS", ("> " if timeout else "") + f"{t_ft:.2f} s")

    print("\nratios (target):")
    _line("churnguard build (full call) / DuckDB query  (<= 3x)", _ratio(cg["full"], t_duck),
          ("lower bound: " if cg["full_lower_bound"] else "") + f"{title}, tables already in memory")
    _line("churnguard build, lifespan given / DuckDB query  (<= 3x)", _ratio(cg["given"], t_duck), title)
    if cg["load"] and cg["given"]:
        _line("churnguard load+validate+build (lifespan given) / DuckDB", _ratio(cg["load"] + cg["given"], t_duck),
              f"both from the {kind} files")
        _line("the same in CPU time (all threads) / DuckDB's CPU time", _ratio(cg["cpu"], duck_cpu),
              "steadier than wall time on a shared machine")
    if sl is not None:
        _line("churnguard / DuckDB on the slice (full call)  (<= 3x)", _ratio(sl["full"], t_duck_slice))
        _line("featuretools / churnguard on the slice (full call)  (>= 20x)", _ratio(t_ft, sl["full"]),
              "EntitySet + DFS vs build_features")
        _line("featuretools / churnguard, lifespan given  (>= 20x)", _ratio(t_ft, sl["given"]))
    if len(rounds) > 1:
        print(f"\n{len(rounds)} rounds, {title} (DuckDB's first run; churnguard's full call and with the lifespan "
              "given):")
        for i, (duck, full, given, _) in enumerate(rounds, 1):
            _line(f"round {i}: DuckDB {_fmt_s(duck)}, full {_fmt_s(full)}, given {_fmt_s(given)}",
                  f"{_ratio(full, duck)} / {_ratio(given, duck)}")
        for label, k in (("full call", 1), ("lifespan given", 2), ("load + build, lifespan given", 3)):
            ratios = sorted(r[k] / r[0] for r in rounds if r[k] and r[0])
            if ratios:
                _line(f"median churnguard build ({label}) / DuckDB query  (<= 3x)", f"{statistics.median(ratios):.2f}x",
                      f"range {ratios[0]:.2f}-{ratios[-1]:.2f}x; {sum(x <= 3 for x in ratios)} of {len(ratios)} <= 3x")
    if sl is not None and sl["estimate"] and sl["pairs"] and cg["pairs"] and cg["full_lower_bound"]:
        extra = sl["estimate"] * cg["pairs"] / sl["pairs"]
        print(f"\n  estimate_lifespan_years at {title}, extrapolated from the slice (time grows with "
              f"n_year_before x n_last_year): ~{extra:,.0f} s, so the full build_features call takes "
              f"~{(cg['given'] or 0) + extra:,.0f} s", flush=True)


if __name__ == "__main__":
    main()
