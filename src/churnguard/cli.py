"""The ``churnguard`` command line: parses arguments, loads config and calls the library.

Heavy libraries (pandas, LightGBM, MLflow) are imported inside the commands so ``churnguard --help``
answers at once.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="churnguard",
    help="Find the customers about to stop buying, why, and what to do about it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_Opt = typer.Option
ConfigOpt = Annotated[Path | None, _Opt("--config", "-c", help="YAML config (default: built-in defaults).")]
TxOpt = Annotated[Path, _Opt("--transactions", "-t", help="Transactions file (.csv or .parquet).")]
TicketsOpt = Annotated[Path | None, _Opt("--tickets", help="Support tickets file (optional).")]
CustomersOpt = Annotated[Path | None, _Opt("--customers", help="Customer attributes file (optional).")]


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _fail(message: str) -> None:
    _console().print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


def _run(fn, *args, **kwargs):
    """Call a library function, turning the errors a user can fix into a clean message and exit code 2."""
    from churnguard.config import ConfigError
    from churnguard.dataset import DataError

    try:
        return fn(*args, **kwargs)
    except (DataError, ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))


@app.callback()
def _main(verbose: Annotated[bool, _Opt("--verbose", "-v", help="Log progress details.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, _Opt("--out", "-o", help="Directory for transactions, tickets and customers files.")],
    customers: Annotated[int, _Opt("--customers", "-n", min=10, help="Number of customers.")] = 5000,
    seed: Annotated[int, _Opt(help="Random seed; the same seed gives the same data.")] = 0,
    fmt: Annotated[str, _Opt("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Generate a seeded synthetic retail world (transactions, support tickets, customers)."""
    from churnguard.demo import generate_demo_data, write_demo_data

    if fmt not in ("csv", "parquet"):
        _fail(f"--format must be csv or parquet, got {fmt!r}")
    console = _console()
    with console.status(f"Generating {customers:,} customers"):
        data = generate_demo_data(customers, seed=seed)
        paths = write_demo_data(data, out, fmt=fmt)
    for name, path in paths.items():
        console.print(f"{name:>13}: {len(getattr(data, name)):>10,} rows -> {path}")


@app.command("features")
def features(
    transactions: TxOpt,
    as_of: Annotated[str, _Opt("--as-of", help="Cut-off day YYYY-MM-DD: only events on or before it are used.")],
    out: Annotated[Path, _Opt("--out", "-o", help="Output file (.parquet or .csv), written atomically.")],
    tickets: TicketsOpt = None,
    customers: CustomersOpt = None,
    config: ConfigOpt = None,
    rejects: Annotated[
        Path | None, _Opt(help="Where to write rejected rows (default: <out>.rejects.csv when there are any).")
    ] = None,
) -> None:
    """Compute point-in-time features, one row per customer, as of a cut-off day."""
    from churnguard._io import write_table
    from churnguard.config import load_config
    from churnguard.dataset import load_tables
    from churnguard.features import build_features

    cfg = _run(load_config, config)
    console = _console()
    with console.status("Reading and validating input"):
        tables = _run(load_tables, transactions, tickets, customers, config=cfg.data)
    with console.status(f"Building features as of {as_of}"):
        feats = _run(build_features, tables, as_of, cfg.features)
        write_table(feats, out)
    console.print(f"features: {len(feats):,} customers x {feats.shape[1] - 2} features -> {out}")
    _report_rejects(tables.rejects, rejects or out.with_name(out.stem + ".rejects.csv"))


def _report_rejects(rejects, path: Path) -> None:
    from churnguard._io import write_table

    if rejects.empty:
        return
    write_table(rejects, path)
    counts = rejects.groupby(["table", "reason"]).size()
    lines = ", ".join(f"{t}: {n} {r}" for (t, r), n in counts.items())
    _console().print(f"[yellow]rejected rows[/]: {len(rejects):,} ({lines}) -> {path}")


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())


if __name__ == "__main__":
    main()
