"""Same results as another checkout: features, validated tables, rejects and scores on a slice of customers.

Runs the real commands of two source trees -- this checkout's ``src`` and ``--reference`` (e.g. a checkout of
``main`` made with ``git worktree add --detach /tmp/wt-base main``) -- on the same inputs, each in its own
process, and compares what they wrote:

* ``load_tables`` on the files: every validated table, exactly (``assert_frame_equal``), and the rejects;
* ``churnguard features`` (the default call: lifespan and VIP cut-off estimated): the features file, exactly;
* ``churnguard score`` (the model of ``score_bench.py``): every column exactly, but the probabilities and the
  values computed from them, to 1e-12;

on four inputs: a random slice of ``--slice`` customers of the cached benchmark world (``_data.py``) as
Parquet and as CSV, and the same slice with bad rows added (ids with spaces around them, written as floats,
blank or missing; infinite amounts; a customer listed twice; tickets of unknown customers) read with
``on_bad_rows: reject``, as Parquet and CSV. Prints each comparison and exits 1 when any differs. A slice this
small is read as one partition; ``--partitions N`` has ``features`` and ``score`` split it into N, as the 1M
world is split.

Run from the repository root::

    python benchmarks/same_results.py --reference /tmp/wt-base [--customers 200000] [--slice 50000] [--partitions 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _data import CACHE, add_data_args, ensure_data

_HERE = Path(__file__).resolve().parent
_TABLES = ("transactions", "tickets", "customers")
_CLOSE = ("probability", "expected", "value", "clv", "cltv", "uplift", "shap", "contribution")


def _dirty(src: Path, out: Path, seed: int) -> None:
    """The slice with bad rows added (see the module docstring), as Parquet."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    tx = pd.read_parquet(src / "transactions.parquet")
    ids = tx["customer_id"].to_numpy(dtype=object, copy=True)
    picks = rng.choice(len(tx), size=400, replace=False)
    ids[picks[:150]] = [f"  {v} " for v in ids[picks[:150]]]
    ids[picks[150:250]] = [f"{v}.0" for v in ids[picks[150:250]]]
    ids[picks[250:280]] = ""
    ids[picks[280:300]] = None
    tx["customer_id"] = pd.array(ids, dtype="str")
    tx.loc[picks[300:310], "amount"] = np.inf
    cu = pd.read_parquet(src / "customers.parquet")
    cu = pd.concat([cu, cu.sample(5, random_state=seed)], ignore_index=True)
    tk = pd.read_parquet(src / "tickets.parquet")
    tk.loc[tk.sample(10, random_state=seed).index, "customer_id"] = "nobody"
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("transactions", tx), ("tickets", tk), ("customers", cu)):
        frame.to_parquet(out / f"{name}.parquet", index=False)


def _as_csv(src: Path, out: Path) -> None:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    for name in _TABLES:
        pcsv.write_csv(pq.read_table(src / f"{name}.parquet"), out / f"{name}.csv")


def _inputs(base: Path, slice_dir: Path, seed: int) -> dict[str, tuple[dict[str, Path], bool]]:
    """Per input: its three files and whether bad rows are set aside (written under ``base`` once)."""
    dirty = base / "dirty"
    if not (dirty / "customers.parquet").is_file():
        _dirty(slice_dir, dirty, seed)
    for d in (slice_dir, dirty):
        if not (d / "csv" / "customers.csv").is_file():
            _as_csv(d, d / "csv")
    files = {"parquet": (slice_dir, ".parquet"), "csv": (slice_dir / "csv", ".csv"),
             "dirty-parquet": (dirty, ".parquet"), "dirty-csv": (dirty / "csv", ".csv")}
    return {k: ({t: d / f"{t}{ext}" for t in _TABLES}, k.startswith("dirty")) for k, (d, ext) in files.items()}


def _blocks(block_rows: int | None) -> str:
    """Code that sets the rows of a Parquet block ``load_tables`` reads at once, and the bytes of a CSV block to
    about as many rows of transactions (80 bytes a row) (None: the package's)."""
    return "" if block_rows is None else (f"import churnguard.dataset as _d\n_d.BLOCK_ROWS = {block_rows}\n"
                                          f"_d.CSV_BLOCK_BYTES = {block_rows * 80}\n")


def _run(src: Path, argv: list[str], log: Path, block_rows: int | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONWARNINGS": "ignore"}
    code = (f"import sys; sys.argv = {['churnguard', *argv]!r}\n{_blocks(block_rows)}"
            "from churnguard.cli import main\nmain()\n")
    with open(log, "wb") as fh:
        subprocess.run([sys.executable, "-c", code], env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)


def _tables(src: Path, files: dict[str, Path], config: Path, out: Path, block_rows: int | None = None) -> None:
    """``load_tables`` in a process of tree ``src``: each validated frame and the rejects, as pickles."""
    code = (
        f"import sys, pickle\n{_blocks(block_rows)}from churnguard.config import load_config\n"
        "from churnguard.dataset import load_tables\n"
        f"t = load_tables(*{[str(files[n]) for n in _TABLES]!r}, config=load_config({str(config)!r}).data)\n"
        f"pickle.dump({{n: getattr(t, n) for n in ('transactions', 'tickets', 'customers', 'rejects')}}, "
        f"open({str(out)!r}, 'wb'))\n")
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def _produce(src: Path, files: dict[str, Path], reject: bool, model: Path, out: Path,
             block_rows: int | None = None, partitions: int | None = None) -> None:
    """Tables, features and scores of tree ``src`` on ``files`` into ``out`` (``partitions``: how many customer
    partitions ``features`` and ``score`` split the input into; None: their default)."""
    out.mkdir(parents=True, exist_ok=True)
    config = out / "config.yaml"
    config.write_text(f"data:\n  on_bad_rows: {'reject' if reject else 'raise'}\n")
    _tables(src, files, config, out / "tables.pickle", block_rows)
    inputs = ["--transactions", str(files["transactions"]), "--tickets", str(files["tickets"]), "--customers",
              str(files["customers"]), *(["--partitions", str(partitions)] if partitions else [])]
    _run(src, ["features", *inputs, "--as-of", "2025-12-31", "--out", str(out / "features.parquet"),
               "--config", str(config), "--rejects", str(out / "features.rejects.csv")], out / "features.log",
         block_rows)
    _run(src, ["score", "--model", str(model), *inputs, "--out", str(out / "scores.parquet"),
               *(["--reject-bad-rows"] if reject else []), "--rejects", str(out / "scores.rejects.csv")],
         out / "score.log")


def _compare(name: str, mine: Path, theirs: Path) -> list[str]:
    """Differences between two runs' outputs (empty: the same)."""
    import pickle

    import numpy as np
    import pandas as pd

    problems = []
    a, b = (pickle.loads((d / "tables.pickle").read_bytes()) for d in (mine, theirs))
    for table in a:
        try:
            if a[table] is None or b[table] is None:
                assert a[table] is None, "one is missing"
                assert b[table] is None, "one is missing"
            else:
                pd.testing.assert_frame_equal(a[table], b[table], check_exact=True)
        except AssertionError as exc:
            problems.append(f"{name}: load_tables {table}: {str(exc)[:300]}")
    for file in ("features.parquet", "features.rejects.csv", "scores.rejects.csv"):
        x, y = mine / file, theirs / file
        if x.is_file() != y.is_file():
            problems.append(f"{name}: {file} written by one run only")
        elif x.is_file() and x.read_bytes() != y.read_bytes():
            read = pd.read_parquet if file.endswith(".parquet") else pd.read_csv
            try:
                pd.testing.assert_frame_equal(read(x), read(y), check_exact=True)
            except AssertionError as exc:
                problems.append(f"{name}: {file}: {str(exc)[:300]}")
    x, y = mine / "scores.parquet", theirs / "scores.parquet"
    if not (x.is_file() and y.is_file()):
        return [*problems, f"{name}: scores.parquet missing (see score.log)"]
    got, want = pd.read_parquet(x), pd.read_parquet(y)
    close = [c for c in want.columns if any(k in c for k in _CLOSE) and pd.api.types.is_float_dtype(want[c])]
    try:
        pd.testing.assert_frame_equal(got.drop(columns=close), want.drop(columns=close), check_exact=True)
        for c in close:
            diff = np.nanmax(np.abs(got[c].to_numpy() - want[c].to_numpy()), initial=0.0)
            same_nan = (got[c].isna() == want[c].isna()).all()
            assert same_nan, f"{c}: missing in one run only"
            assert diff <= 1e-12, f"{c}: max difference {diff:g}"
    except AssertionError as exc:
        problems.append(f"{name}: scores.parquet: {str(exc)[:300]}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser, customers=200_000)
    parser.add_argument("--reference", type=Path, required=True, help="checkout to compare with (its src is used)")
    parser.add_argument("--slice", type=int, default=50_000, help="customers in the slice (default 50,000)")
    parser.add_argument("--block-rows", type=int, default=None,
                        help="rows of a Parquet block this checkout's load_tables reads at once, and about as many "
                             "rows of a CSV block (default: the package's), to compare many blocks on a small slice")
    parser.add_argument("--partitions", type=int, default=None,
                        help="customer partitions of features and score (default: theirs, one for a small slice)")
    parser.add_argument("--model", type=Path, default=CACHE / "models" / "train-100000-seed0.zip",
                        help="model to score with (default: score_bench.py's)")
    args = parser.parse_args()

    from features_bench import make_slice

    full = ensure_data(args.customers, args.seed)
    slice_dir = make_slice(full, args.slice, args.seed)
    inputs = _inputs(slice_dir, slice_dir, args.seed)
    trees = {"this checkout": _HERE.parent / "src", "reference": args.reference.resolve() / "src"}
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (files, reject) in inputs.items():
            outs = {}
            for label, src in trees.items():
                outs[label] = Path(tmp) / name / label.replace(" ", "-")
                _produce(src, files, reject, args.model, outs[label],
                         args.block_rows if label == "this checkout" else None, args.partitions)
            found = _compare(name, outs["this checkout"], outs["reference"])
            rows = pd_rows(outs["reference"])
            print(f"{name:>14}: {'same' if not found else 'DIFFERENT'} ({rows})", flush=True)
            problems += found
    for line in problems:
        print("  " + line)
    sys.exit(1 if problems else 0)


def pd_rows(out: Path) -> str:
    """What a run produced, in rows: features, scores and rejects."""
    import pickle

    import pandas as pd

    tables = pickle.loads((out / "tables.pickle").read_bytes())
    n = {f: len(pd.read_parquet(out / f)) if (out / f).is_file() else 0 for f in ("features.parquet", "scores.parquet")}
    return (f"{len(tables['transactions']):,} transactions, {len(tables['rejects']):,} rejects, "
            f"{n['features.parquet']:,} feature rows, {n['scores.parquet']:,} scores")


if __name__ == "__main__":
    main()
