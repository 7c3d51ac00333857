"""The ``churnguard`` command line: parses arguments, loads config and calls the library.

Heavy libraries (pandas, LightGBM, MLflow) are imported inside the commands so ``churnguard --help``
answers at once.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="churnguard",
    help="Find the customers about to stop buying, why, and what to do about it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_Opt = typer.Option


def _iso_day(value: str | None) -> str | None:
    """An ``--as-of`` value: a calendar day written YYYY-MM-DD (anything else is refused, not guessed at)."""
    import re
    from datetime import date, timedelta

    if value is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):  # fromisoformat also takes 20250102, 2025-W01-1
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a day written YYYY-MM-DD, e.g. 2025-01-02") from None
    from churnguard.dataset import latest_plausible_date

    if day >= latest_plausible_date():  # as the server refuses it
        raise typer.BadParameter(f"{value} is after today ({latest_plausible_date() - timedelta(days=1)}, UTC); "
                                 "as_of is a day whose history is in the data")
    return value


def _table_out(value: Path | None) -> Path | None:
    """An output table's path: its suffix must say CSV or Parquet (checked before any work is done)."""
    from churnguard._io.files import table_suffix

    if value is not None:
        try:
            table_suffix(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if value.is_dir():
            raise typer.BadParameter(f"{value} is a directory; name a file")
    return value


def _input(value: str):
    """An input table: a file or directory path, or a database URL (``churnguard.sources``), parsed once."""
    from churnguard.sources import DatabaseError, is_url, parse_source

    if not is_url(value):
        return Path(value)
    try:
        return parse_source(value)
    except DatabaseError as exc:
        raise typer.BadParameter(str(exc)) from None


def _scores_out(value: str):
    """The scores' destination: a file whose suffix says CSV or Parquet, or a database URL naming a table."""
    from churnguard.sources import is_url

    dest = _input(value)
    if is_url(dest) and dest.table is None:
        raise typer.BadParameter(f"{value}: name the table to write (?table=churn_scores), not a query")
    return dest if is_url(dest) else _table_out(dest)


_IN = {"parser": _input, "metavar": "PATH|URL"}
# What _input returns: a Path or a DbSource. Typer before 0.29 converts a parsed value annotated as Path with
# Path() again, which a DbSource cannot take, so these options are annotated with this alias instead.
Source = object
_DB = " or a database URL"
_OR_CONFIG = " (default: data.tables.transactions of the config)"
# The end of the help of every command that reads the tables.
_URLS = ("A database URL is postgresql://USER@HOST:PORT/DB?table=NAME or duckdb:///FILE?table=NAME; with "
         "data.database in the config, a bare table NAME is enough.")
ConfigOpt = Annotated[Path | None, _Opt("--config", "-c", help="YAML config (default: built-in defaults).")]


def _table_opt(flags: tuple[str, ...], what: str, *, dask: bool = False):
    """An input table's option; ``dask``: the commands with an --engine option, whose dask engine also reads
    Parquet dataset directories."""
    end = "; with --engine dask also a directory of Parquet files." if dask else "."
    return Annotated[Source | None, _Opt(*flags, **_IN, help=what + end)]


_TABLES = {"transactions": (("--transactions", "-t"), f"Transactions file (.csv or .parquet){_DB}{_OR_CONFIG}"),
           "tickets": (("--tickets",), f"Support tickets file{_DB} (optional)"),
           "customers": (("--customers",), f"Customer attributes file{_DB} (optional)"),
           "events": (("--events",), f"Events file (visits, sessions, emails){_DB} (optional)")}
TxOpt, TicketsOpt, CustomersOpt, EventsOpt = (_table_opt(*v) for v in _TABLES.values())
EngineTxOpt, EngineTicketsOpt, EngineCustomersOpt, EngineEventsOpt = (_table_opt(*v, dask=True)
                                                                      for v in _TABLES.values())
IfExistsOpt = Annotated[str, _Opt("--if-exists", metavar="replace|append",
                                  help="With a database --out: replace the tables or append to them.")]
EngineOpt = Annotated[str, _Opt("--engine", metavar="local|dask",
                                help="local (pandas, in this process) or dask (customer partitions on a "
                                "Dask cluster; needs the 'dask' extra).")]
FeaturesPartitionsOpt = Annotated[int | None, _Opt(
    min=1, metavar="N",
    help="Split the input into this many customer partitions, built two at a time on two cores (1: all at once in memory; "
                "default: all at once, or for input files of more than ~256 MB or ~4.2M rows one partition per ~256 MB "
                "or ~4.2M rows, whichever gives more; with --engine dask one per ~128 MB, at least one per worker "
                "thread).")]
SchedulerOpt = Annotated[str | None, _Opt("--scheduler", metavar="ADDRESS",
                                          help="With --engine dask: address of a running scheduler, "
                                          "e.g. tcp://10.0.0.5:8786 (default: start a local cluster). Its workers "
                                          "read the input paths (or database tables) themselves, so they must see "
                                          "the same files (or reach the database).")]
WorkersOpt = Annotated[int | None, _Opt("--workers", min=1, metavar="N",
                                        help="With --engine dask: worker processes of the "
                                        "local cluster (default: one per core).")]
ScoreUpliftOpt = Annotated[Path | None, _Opt("--uplift-model", help="Uplift model of 'train-uplift': choose actions and "
                                             "select by incremental value (uplift x value - cost); local engine.")]
ServeUpliftOpt = Annotated[Path | None, _Opt("--uplift-model", help="Uplift model of 'train-uplift': POST /predict "
                                             "adds uplift and incremental_value, and chooses actions and selects by "
                                             "incremental value, as score --uplift-model.")]


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _fail(message: str) -> None:
    from rich.markup import escape

    # escaped: messages quote values, paths and pip extras ("churnguard[dask]") that are not markup
    _console().print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


def _run(fn, *args, _also: tuple[type[Exception], ...] = (), **kwargs):
    """Call a library function, turning the errors a user can fix (``ValueError``, which ``DataError`` and
    ``ConfigError`` are, ``FileNotFoundError`` and ``_also``) into a clean message and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, FileNotFoundError, *_also) as exc:
        _fail(str(exc))


def _use_dask(engine: str, scheduler: str | None, workers: int | None, *inputs) -> bool:
    """Check the engine options against the inputs (transactions, tickets, customers, events; see
    ``check_engine``); True for the dask engine, whose logging is then quiet without --verbose (Dask's own setup
    logs at INFO)."""
    from churnguard.engines import check_engine

    dask = _run(check_engine, engine, scheduler, workers, **dict(zip(_TABLES, inputs, strict=True)))
    if dask and not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("distributed").setLevel(logging.WARNING)
    return dask


def _inputs(data, *given, required: bool = True) -> tuple:
    """The inputs ``given`` (transactions, then tickets, customers and events, as many as given) with the config's
    database filled in (``churnguard.sources.resolve_inputs``): the tables that ``data.tables`` names for inputs
    left out, and bare names as tables of ``data.database`` (default ``$CHURNGUARD_DATABASE_URL``); stops when
    ``required`` and there is still no transactions input."""
    from churnguard.sources import DATABASE_ENV, resolve_inputs

    given = dict(zip(list(_TABLES)[:len(given)], given, strict=True))
    found = _run(resolve_inputs, given, data.database or os.environ.get(DATABASE_ENV), dict(data.tables))
    if required and found["transactions"] is None:
        _fail("give --transactions (a file, a database URL or a table name), or set data.tables.transactions")
    return tuple(found.values())


def _runner(dask: bool):
    """:func:`_run`; for a job on the dask engine also reporting failed or dead workers and a lost scheduler
    (``RuntimeError`` naming the step; nothing was written)."""
    return functools.partial(_run, _also=(RuntimeError,) if dask else ())


def _say(text: str | None, *, warn: bool = False) -> None:
    """Print a line a library function wrote (nothing for None); ``warn`` shows it in yellow. Long lines flow on
    as the terminal wraps them, never cut inside a word: the paths and URLs they name stay whole."""
    if text is not None:
        _console().print(text, style="yellow" if warn else None, highlight=False, markup=False, soft_wrap=True)


@contextmanager
def _steps():
    """Show the library's ``on_step`` reports (a description, and how far when it says ``done`` of ``total``)
    with the time elapsed while in the block; yields ``(on_step, on_note)``."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    def note(line: str) -> None:
        _console().print(line, highlight=False, soft_wrap=True, markup=False)

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=_console(),
                  transient=True) as progress:
        task = progress.add_task("", total=None)
        yield (lambda description, done=None, total=None: progress.update(
            task, description=description, completed=done, total=total)), note


@app.callback()
def _main(verbose: Annotated[bool, _Opt("--verbose", "-v", help="Log progress details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # MLflow sets up its own loggers, at INFO unless told otherwise, when first imported
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, _Opt("--out", "-o", help="Directory for transactions, tickets, customers and events "
                              "files.")],
    customers: Annotated[int, _Opt("--customers", "-n", min=10, help="Number of customers.")] = 5000,
    seed: Annotated[int, _Opt(metavar="N", help="Random seed; the same seed gives the same data.")] = 0,
    fmt: Annotated[str, _Opt("--format", help="csv or parquet.")] = "csv",
    shape: Annotated[str, _Opt("--shape", help="contract (the three tables) or online-retail (one line-item "
                                "export and the config that reads it).")] = "contract",
) -> None:
    """Generate a seeded synthetic retail world (transactions, support tickets, customers, events) with two past
    campaigns and their control groups (campaigns; campaign_truth holds their simulated effects)."""
    from churnguard._io.files import check_output_dir
    from churnguard.demo import (
        generate_demo_data,
        generate_online_retail,
        write_demo_data,
        write_online_retail,
    )

    if fmt not in ("csv", "parquet"):
        _fail(f"--format must be csv or parquet, got {fmt!r}")
    if shape not in ("contract", "online-retail"):
        _fail(f"--shape must be contract or online-retail, got {shape!r}")
    _run(check_output_dir, out)
    console = _console()
    if shape == "online-retail":
        export = _run(generate_online_retail, customers, seed=seed)
        paths = write_online_retail(export, out)
        console.print(f"export: {len(export):>10,} lines -> {paths['export']}\nconfig: {paths['config']}")
        return
    with console.status(f"Generating {customers:,} customers"):
        data = _run(generate_demo_data, customers, seed=seed, events=True, campaign=True)
        paths = write_demo_data(data, out, fmt=fmt)
    for name, path in paths.items():
        console.print(f"{name:>13}: {len(getattr(data, name)):>10,} rows -> {path}")


@app.command("features", epilog=_URLS)
def features(
    out: Annotated[Source, _Opt("--out", "-o", parser=_scores_out, metavar="PATH|URL",
                                help="Output file (.parquet or .csv), written atomically, or a database URL "
                                "naming a table NAME, written with NAME_rejects in one transaction.")],
    as_of: Annotated[str | None, _Opt("--as-of", callback=_iso_day, metavar="DAY",
                                      help="Cut-off day YYYY-MM-DD: only events on or before it are used "
                                      "(default: last day in the data).")] = None,
    transactions: EngineTxOpt = None,
    tickets: EngineTicketsOpt = None,
    customers: EngineCustomersOpt = None,
    events: EngineEventsOpt = None,
    config: ConfigOpt = None,
    rejects: Annotated[Path | None, _Opt(callback=_table_out, help="Where to write rejected rows (default: "
                                         "<out>.rejects.csv when there are any).")] = None,
    if_exists: IfExistsOpt = "replace",
    partitions: FeaturesPartitionsOpt = None,
    engine: EngineOpt = "local",
    scheduler: SchedulerOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Compute point-in-time features, one row per customer, as of a cut-off day.

    With --partitions N the customers are split into N partitions, validated and built two at a time on two
    threads (memory: about 2/N of the input's), as large input files are without it; with --engine dask, in
    parallel on a Dask cluster. The features are the same.
    """
    from churnguard._io.files import replaced_together
    from churnguard.config import load_config
    from churnguard.dataset import write_rejects
    from churnguard.engines import build_features_from_files
    from churnguard.sources import is_url

    cfg = _run(load_config, config)
    transactions, tickets, customers, events = _inputs(cfg.data, transactions, tickets, customers, events)
    dask = _use_dask(engine, scheduler, workers, transactions, tickets, customers, events)
    run = functools.partial(_runner(dask), build_features_from_files, engine, transactions, tickets, customers,
                            as_of=as_of, config=cfg, scheduler=scheduler, workers=workers, events=events,
                            partitions=partitions)
    if is_url(out):
        _check_db_out(out, rejects, if_exists)
        return _into_db(run, out, if_exists=if_exists)
    finals = (out, rejects or out.with_name(out.stem + ".rejects.csv"))
    _outputs_apart(dict(zip(("--out", "--rejects"), finals, strict=True)),
                   _named_inputs(transactions, tickets, customers, events, config=config))
    with replaced_together(*finals) as staged, _steps() as (step, note):
        result = run(out=staged[0], on_step=step, on_note=note)
        said = [(result.summary(), False), (write_rejects(result.rejects, staged[1]), True)]
    _say_files(said, staged, finals)


@app.command("train", epilog=_URLS)
def train(
    config: ConfigOpt = None,
    transactions: Annotated[
        Source | None, _Opt("--transactions", "-t", **_IN, help=f"Transactions file{_DB} (with --engine dask also a "
                          "directory of Parquet files); without it, trains on generated demo data.")
    ] = None,
    tickets: EngineTicketsOpt = None,
    customers: EngineCustomersOpt = None,
    events: EngineEventsOpt = None,
    as_of: Annotated[str | None, _Opt("--as-of", callback=_iso_day, metavar="DAY",
                                      help="'Today', YYYY-MM-DD: last day of data "
                                      "to use (default: last day in the data).")] = None,
    horizon_days: Annotated[int | None, _Opt(help="Churn = no purchase within this many days (overrides "
                                             "config).")] = None,
    horizons: Annotated[str | None, _Opt(help="Also a churn curve: churn_probability_<h>d for each of these "
                                         "horizons, e.g. 30,60,90,180 (overrides labels.horizons).")] = None,
    model_out: Annotated[Path, _Opt("--model-out", "-o", help="Where to write the model file.")] = Path(
        "models/churn_model.zip"
    ),
    tracking_uri: Annotated[
        str | None, _Opt(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).")
    ] = None,
    experiment: Annotated[str | None, _Opt(help="MLflow experiment name (overrides config).")] = None,
    demo_customers: Annotated[int, _Opt(help="Customers in the generated demo data when no files are given.")] = 5000,
    engine: EngineOpt = "local",
    scheduler: SchedulerOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Train a calibrated churn model on rolling snapshots, score it against baselines, track it in MLflow.

    With --engine dask the training set is built per customer partition on a Dask cluster and LightGBM trains
    there (lightgbm.dask); the number of trees is chosen by early stopping on a sample of the training rows.
    """
    from churnguard.config import default_config_text, load_config
    from churnguard.dataset import write_rejects
    from churnguard.engines import train_from_files

    cfg = _run(load_config, config)
    transactions, tickets, customers, events = _inputs(cfg.data, transactions, tickets, customers, events,
                                                       required=False)
    _outputs_apart({"--model-out": model_out, "the rejects file": model_out.with_name(model_out.stem + ".rejects.csv")},
                   _named_inputs(transactions, tickets, customers, events, config=config))
    dask = _use_dask(engine, scheduler, workers, transactions, tickets, customers, events)
    cfg = _run(cfg.with_overrides, labels={"horizon_days": horizon_days, "horizons": _day_list(horizons)},
               tracking={"tracking_uri": tracking_uri, "experiment": experiment})
    with _steps() as (step, note):
        result, bad_rows = _runner(dask)(
            train_from_files, engine, transactions, tickets, customers, config=cfg, model_out=model_out,
            config_text=config.read_text() if config else default_config_text(), as_of=as_of,
            demo_customers=demo_customers, scheduler=scheduler, workers=workers, on_step=step, on_note=note,
            events=events)
    _print_training_summary(result)
    if not bad_rows.empty:
        _say(write_rejects(bad_rows, model_out.with_name(model_out.stem + ".rejects.csv")), warn=True)


def _day_list(text: str | None) -> list[int] | None:
    """``30,60,90`` as ``[30, 60, 90]`` (None for None); anything else stops with the option's name."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        _fail(f"--horizons must be whole days separated by commas, e.g. 30,60,90,180; got {text!r}")


def _print_training_summary(result) -> None:
    from rich.table import Table

    from churnguard._text import plural
    from churnguard.training.evaluation import (
        evaluation_sentence,
        evaluation_title,
        level_sentence,
        schedule_sentence,
        support_sentence,
        tuning_sentence,
    )

    console = _console()
    s = result.summary
    trees = f"{s['best_iteration']} trees, {tuning_sentence(s)}"
    if s.get("engine") == "dask":
        trees = (f"{s['best_iteration']} trees, chosen by early stopping of a model of a sample of "
                 f"{s['rounds_chosen_on_rows']:,} rows; trained with lightgbm.dask")
    sampled = ""
    if s.get("train_sampled"):
        sampled = (f" (a {s['train_sample_fraction']:.1%} sample of each snapshot's customers, of "
                   f"{s['train_rows_available']:,}: snapshots.max_train_rows = {s['max_train_rows']:,})")
    deployed = s["deployed_snapshots"]
    facts = Table(title="Training run", show_header=False)
    facts.add_column(style="bold")
    facts.add_column()
    for label, value in [
        ("data", (f"{s['data_first_day']} to {s['as_of']}: {s['transactions']:,} transactions, "
                  f"{plural(s['tickets'], 'ticket')}, {plural(s['customers'], 'customer')}")),
        ("deployed model", (f"learned from {len(deployed)} snapshots ({deployed[0]} .. {deployed[-1]}), "
                            f"{s['train_rows']:,} rows{sampled}, churn rate {s['train_churn_rate']:.1%}")),
        *([("schedule", schedule_sentence(s))] if s.get("schedule_adapted") else []),
        ("tuning", trees),
        ("calibration", (f"{s['calibration']}, cross-fitted on {len(s['calibration_snapshots'])} snapshots at "
                         f"this time of year (Brier {s['calibration_brier_raw']:.4f} -> "
                         f"{s['calibration_brier']:.4f} calibrated)")),
        *([("level", level_sentence(s))] if "level_correction" in s else []),
        *([("support", support_sentence(s))] if s.get("beyond_support_share") else []),
        ("evaluation", evaluation_sentence(s)),
        ("model file", str(result.model_path)),
        ("MLflow run", f"{result.run_id} in {result.tracking_uri}"),
        ("registry", f"version {result.registered_version}"),
    ]:
        facts.add_row(label, value)
    console.print(facts)
    _print_scorecards(f"Scorecard of the {evaluation_title(s)}", result.scorecards)
    curve = result.model.require_info().curve
    if curve is not None:
        _print_scorecards(f"Churn curve: backtest as of {curve.backtest_as_of}, per horizon",
                          {f"{h}d": card for h, card in curve.scorecards.items()})
    console.print(("[green]" if result.beats_baselines else "[bold red]") + result.verdict)
    if result.registered_version is not None:
        from rich.markup import escape

        console.print(f"{'[green]' if result.champion else '[bold yellow]'}Registry version "
                      f"{result.registered_version}: {escape(result.promotion)}", highlight=False, soft_wrap=True)


def _print_scorecards(title: str, cards: dict[str, dict[str, float]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for name in cards:
        table.add_column(name, justify="right")
    for metric in next(iter(cards.values())):
        table.add_row(metric, *(f"{c[metric]:,.0f}" if metric == "n" else f"{c[metric]:.4f}" for c in cards.values()))
    _console().print(table)


@app.command("evaluate", epilog=_URLS)
def evaluate(
    model: Annotated[Path, _Opt("--model", "-m", help="Model file written by 'churnguard train'.")],
    as_of: Annotated[str, _Opt("--as-of", callback=_iso_day, metavar="DAY",
                               help="Past snapshot day YYYY-MM-DD whose outcome window is in the data.")],
    transactions: TxOpt = None,
    tickets: TicketsOpt = None,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    config: ConfigOpt = None,
    tracking_uri: Annotated[str | None, _Opt(help="MLflow tracking URI for the evaluation run.")] = None,
    no_log: Annotated[bool, _Opt("--no-log", help="Do not record the evaluation in MLflow.")] = False,
    rejects: Annotated[Path | None, _Opt(callback=_table_out, help="Where to write the rows set aside (by the "
                                         "model's data.on_bad_rows: reject); without it, they are counted "
                                         "only.")] = None,
) -> None:
    """Check a trained model on a past day whose outcome is known: the model file on a day after its training
    day; before it, a backtest of its training procedure with the data up to that day (the training run's
    scorecard on its backtest day). Files are read with the column mapping stored in the model."""
    from churnguard.config import load_config
    from churnguard.dataset import load_tables, rejects_summary, write_rejects
    from churnguard.model import ChurnModel
    from churnguard.training.run import run_evaluation

    cfg = _run(load_config, config)
    cfg = _run(cfg.with_overrides, tracking={"tracking_uri": tracking_uri})
    transactions, tickets, customers, events = _inputs(cfg.data, transactions, tickets, customers, events)
    _outputs_apart({"--rejects": rejects}, _named_inputs(transactions, tickets, customers, events, model=model,
                                                         config=config))
    loaded = _run(ChurnModel.load, model)
    tables = _run(load_tables, transactions, tickets, customers, config=loaded.require_info().config.data,
                  events=events)
    if rejects is not None:
        _say(write_rejects(tables.rejects, rejects), warn=True)
    elif (summary := rejects_summary(tables.rejects)) is not None:
        _say(f"{summary}; --rejects FILE writes them", warn=True)
    result = _run(run_evaluation, model, tables, as_of, tracking=None if no_log else cfg.tracking, model=loaded)
    _say(result.note)
    _print_scorecards(f"Scorecard as of {result.as_of.date()} ({result.kind})", result.scorecards)


# The options of 'score'.
ScoresOutOpt = Annotated[Source, _Opt(
    "--out", "-o", parser=_scores_out, metavar="PATH|URL",
    help="Scores file (.csv or .parquet), written atomically, or a database URL naming a table NAME, written with "
         "NAME_rejects and NAME_drift in one transaction.")]
BudgetOpt = Annotated[float | None, _Opt(
    min=0, metavar="AMOUNT",
    help="Campaign budget: contact the customers with the best expected value per unit of cost within it. "
                "Without it, every customer with a positive expected value is selected.")]
ControlFractionOpt = Annotated[float, _Opt(min=0, max=0.99, metavar="SHARE",
                                           help="Share of selected customers held out.")]
PlaybookOpt = Annotated[Path | None, _Opt("--playbook", help="Playbook YAML (default: built-in, see "
                                          "configs/actions.yaml).")]
ScoreConfigOpt = Annotated[Path | None, _Opt("--config", "-c", help="The config file of 'train': its data section "
                                             "(column names, date format) reads these files (default: the model's).")]
RejectsOpt = Annotated[Path | None, _Opt(callback=_table_out, help="Rejects file (default: <out>.rejects.csv).")]
PartitionsOpt = Annotated[int | None, _Opt(
    min=1, metavar="N",
    help="Split the input into this many customer partitions, scored two at a time on two cores (default: one "
                "per ~256 MB of input or ~2.75M input rows on two cores, ~5.5M on one, whichever gives more; with "
                "--engine dask one per ~128 MB, at least one per worker thread).")]
PsiOpt = Annotated[float, _Opt(min=0, metavar="PSI",
                               help="Warn when a feature's or the score's PSI against the training data "
                               "reaches this.")]


ScoreReadoutOpt = Annotated[Source | None, _Opt("--readout", **_IN, help="Table of 'campaign-readout' for an "
                                                "earlier campaign: the success rates it measured replace the "
                                                "playbook's.")]


@app.command("score", epilog=_URLS)
def score(
    model: Annotated[Path, _Opt("--model", "-m", help="Model file written by 'churnguard train'.")],
    out: ScoresOutOpt,
    transactions: EngineTxOpt = None,
    tickets: EngineTicketsOpt = None,
    customers: EngineCustomersOpt = None,
    events: EngineEventsOpt = None,
    as_of: Annotated[str | None, _Opt("--as-of", callback=_iso_day, metavar="DAY",
                                      help="Score as of this day, YYYY-MM-DD "
                                      "(default: last day in the data).")] = None,
    budget: BudgetOpt = None,
    control_fraction: ControlFractionOpt = 0.1,
    seed: Annotated[int, _Opt(metavar="N", help="Seed for the control group.")] = 0,
    playbook: PlaybookOpt = None,
    config: ScoreConfigOpt = None,
    reject_bad_rows: Annotated[bool, _Opt("--reject-bad-rows",
                                          help="Set unusable input rows aside instead of stopping.")] = False,
    rejects: RejectsOpt = None,
    partitions: PartitionsOpt = None,
    psi_threshold: PsiOpt = 0.2,
    if_exists: IfExistsOpt = "replace",
    engine: EngineOpt = "local",
    scheduler: SchedulerOpt = None,
    workers: WorkersOpt = None,
    readout: ScoreReadoutOpt = None,
    uplift_model: ScoreUpliftOpt = None,
) -> None:
    """Score customers: churn risk, reasons, the action to take and who to contact within a budget.

    Without --budget, every customer with a positive expected value is selected. The output ends with whom to
    contact, the cost, how each action's expected value is made, and the read-out.

    Large inputs are split by customer into partitions (at most ~256 MB or ~2.75M rows of input each on two
    cores), scored two at a time, or in parallel on a Dask cluster with --engine dask; the scores are the same.
    """
    from churnguard.engines import score_from_files
    from churnguard.sources import is_url

    _use_dask(engine, scheduler, workers, transactions, tickets, customers, events)
    _check_score_request((budget, control_fraction, seed), out, rejects, if_exists, _named_inputs(
        transactions, tickets, customers, events, model=model, playbook=playbook, config=config, readout=readout,
        uplift_model=uplift_model))
    rules, data_config, loaded, (transactions, tickets, customers, events), measured = _score_setup(
        playbook, config, model, readout, transactions, tickets, customers, events)
    dask = _use_dask(engine, scheduler, workers, transactions, tickets, customers, events)
    if uplift_model is not None:
        return _score_with_uplift(loaded, uplift_model, (transactions, tickets, customers, events), rules, out,
                                  rejects, partitioned=bool(dask or partitions is not None), data_config=data_config,
                                  reject_bad_rows=reject_bad_rows, if_exists=if_exists, psi_threshold=psi_threshold,
                                  as_of=as_of, budget=budget, control_fraction=control_fraction, seed=seed)
    run = functools.partial(
        _runner(dask), score_from_files, engine, loaded, transactions, tickets, customers, playbook=rules,
        as_of=as_of, budget=budget, control_fraction=control_fraction, seed=seed, reject_bad_rows=reject_bad_rows,
        partitions=partitions, scheduler=scheduler, workers=workers, data_config=data_config, events=events)
    if is_url(out):
        return _score_into_db(run, loaded, out, if_exists=if_exists, psi_threshold=psi_threshold)
    _score_into_files(run, loaded, rules, budget, out, rejects, psi_threshold=psi_threshold, source=transactions,
                      config=config, measured=measured)


def _score_setup(playbook: Path | None, config: Path | None, model: Path, readout, *tables):
    """The playbook (with the success rates ``readout`` measured, when given), the data config (None: the
    model's), the model, the input tables (those data.tables names filled in) and the measured rates, after
    warning about a table the model learned from but is not given, and saying the measured rates."""
    from churnguard.config import load_playbook
    from churnguard.dataset import missing_tables_note
    from churnguard.model import ChurnModel
    from churnguard.reporting.monitoring import load_readout, measured_success_rates

    rules = _run(load_playbook, playbook)
    data_config = None if config is None else _run(_data_config, config)
    loaded = _run(ChurnModel.load, model)
    data = data_config or loaded.require_info().config.data
    transactions, tickets, customers, events = _inputs(data, *tables)
    given = {"tickets": tickets is not None, "customers": customers is not None, "events": events is not None}
    _say(missing_tables_note(list(loaded.feature_names_), given), warn=True)  # a table the model learned from
    measured = None
    if readout is not None:
        measured = measured_success_rates(_run(load_readout, readout), str(readout), [a.name for a in rules.actions])
        _say("\n".join(measured.lines()))
        rules = rules.with_success_rates(measured.rates)
    return rules, data_config, loaded, (transactions, tickets, customers, events), measured


def _score_into_files(run, loaded, rules, budget, out: Path, rejects: Path | None, *, psi_threshold: float,
                      source, config: Path | None, measured=None) -> None:
    """Run the scoring and replace the scores, rejects and drift files together; print what to do next."""
    from churnguard._io.files import replaced_together
    from churnguard.config import DataConfig
    from churnguard.dataset import write_rejects
    from churnguard.scoring import Campaign, drift_check

    finals = _scores_files(out, rejects)
    with replaced_together(*finals) as staged:  # this run's scores, rejects and drift, or the last run's
        with _steps() as (step, note):
            result = run(out=staged[0], on_step=step, on_note=note)
        drift = drift_check(loaded, result.drift_sample, threshold=psi_threshold)
        info = loaded.require_info()
        campaign = Campaign(rules, budget, info.config.labels.horizon_days, info.population.lifespan_years, source,
                            config, measured, model_data_config=info.config.data != DataConfig())
        said = [(result.summary(out, campaign), False), (write_rejects(result.rejects, staged[1]), True),
                (drift.write(staged[2]), not drift.shifted.empty)]
    _say_files(said, staged, finals)


def _check_score_request(selection: tuple, out, rejects: Path | None, if_exists: str, inputs: dict[str, Any]
                         ) -> None:
    """Before any work: the budget, control fraction and seed (``selection``, by the selection's own rule); a
    database output's options; or output files that are one of the ``inputs`` (option name -> source) or one
    another (:func:`_outputs_apart`)."""
    from churnguard.scoring.rules import check_selection
    from churnguard.sources import is_url

    _run(check_selection, *selection)
    if is_url(out):
        _check_db_out(out, rejects, if_exists)
    else:
        _outputs_apart(dict(zip(("--out", "--rejects", "the drift file"), _scores_files(out, rejects), strict=True)),
                       inputs)


def _scores_files(out: Path, rejects: Path | None) -> tuple[Path, Path, Path]:
    """The files a ``score`` run writes: the scores, the rejects and the drift."""
    return out, rejects or out.with_name(out.stem + ".rejects.csv"), out.with_name(out.stem + ".drift.csv")


def _score_with_uplift(loaded, uplift_path: Path, inputs: tuple, rules, out, rejects: Path | None, *,
                       partitioned: bool, data_config, reject_bad_rows: bool, if_exists: str, psi_threshold: float,
                       **choice) -> None:
    """``score --uplift-model``: the tables (events too; files or database tables) scored in memory, actions and
    selection by incremental value (``churnguard.uplift.score.score_files_with_uplift``); into the scores and
    rejects files, replaced together, or a database ``out`` as without the uplift model. ``partitioned``: the
    command asked for Dask or --partitions, which select after scoring each partition from the columns of the
    churn model's scores alone, so this path refuses them."""
    from churnguard._io.files import replaced_together
    from churnguard.dataset import write_rejects
    from churnguard.sources import is_url
    from churnguard.uplift import UpliftModel
    from churnguard.uplift.score import score_files_with_uplift, uplift_summary

    if partitioned:
        _fail("--uplift-model scores in memory on the local engine: leave out --engine dask and --partitions")
    uplift = _run(UpliftModel.load, uplift_path)
    cfg = data_config or loaded.require_info().config.data
    if reject_bad_rows:
        cfg = cfg.model_copy(update={"on_bad_rows": "reject"})
    run = functools.partial(_run, score_files_with_uplift, loaded, uplift, inputs, playbook=rules, data_config=cfg,
                            **choice)
    if is_url(out):
        return _score_into_db(run, loaded, out, if_exists=if_exists, psi_threshold=psi_threshold,
                              summary=lambda result, table: f"{result.summary(table)}\n"
                                                            f"{uplift_summary(result.scores, uplift)}")
    finals = (out, rejects or out.with_name(out.stem + ".rejects.csv"))
    with replaced_together(*finals) as staged, _steps() as (step, _):
        result = run(out=staged[0], on_step=step)
        said = [(result.summary(out) + "\n" + uplift_summary(result.scores, uplift), False),
                (write_rejects(result.rejects, staged[1]), True)]
    _say_files(said, staged, finals)


def _data_config(path: Path):
    """The data section of a config file; a playbook given by mistake is named as one."""
    import yaml

    from churnguard.config import load_config

    text = yaml.safe_load(path.read_text()) if path.is_file() else None
    if isinstance(text, dict) and "actions" in text:
        raise ValueError(f"{path} is a playbook (it lists actions): pass it with --playbook; -c/--config takes the "
                         "config file of 'train'")
    return load_config(path).data


def _check_db_out(out, rejects: Path | None, if_exists: str) -> None:
    """Stop before any work when the options of a database ``--out`` do not fit it."""
    from churnguard.sources import IF_EXISTS

    if if_exists not in IF_EXISTS:
        _fail(f"--if-exists must be replace or append, got {if_exists!r}")
    if rejects is not None:
        _fail(f"--rejects names a file; with a database --out the rejects go to {out.table}_rejects")


def _rejects_table(rejects):
    """Rejected rows with SQL-friendly types: text columns, the row number as a nullable integer."""
    from churnguard.dataset import REJECT_COLUMNS

    return rejects.reindex(columns=REJECT_COLUMNS).astype(
        {c: "str" for c in REJECT_COLUMNS if c != "row"} | {"row": "Int64"})


def _into_db(run, dest, *, if_exists: str, summary=None, extra=None) -> None:
    """Run a job that writes a table file (``run(out=..., on_step=..., on_note=...)``, a result with
    ``rejects`` and ``summary``) and put its rows and rejects in the tables NAME and NAME_rejects of ``dest``, with
    the tables ``extra(result, names, path)`` adds (and its lines to print, each with whether it warns), in one
    transaction (see ``churnguard.sources.write_tables``); prints ``summary(result, table)`` (default:
    ``result.summary()``) and what was written."""
    import tempfile

    import pandas as pd

    from churnguard._io.files import work_dir
    from churnguard.dataset import write_rejects
    from churnguard.sources import write_tables

    names = (dest.table, f"{dest.table}_rejects", f"{dest.table}_drift")
    finals = tuple(str(dest.with_table(n)) for n in names)
    with work_dir(Path(tempfile.gettempdir())) as work:
        staged = (work / "rows.parquet", work / "rejects.csv", work / "drift.csv")
        with _steps() as (step, note):
            result = run(out=staged[0], on_step=step, on_note=note)
        frames = {names[0]: pd.read_parquet(staged[0]), names[1]: _rejects_table(result.rejects)}
        more, lines = extra(result, names, staged[2]) if extra else ({}, [])
        _run(write_tables, dest, frames | more, if_exists=if_exists)
        line = summary(result, finals[0]) if summary else result.summary()
        said = [(line, False), (write_rejects(result.rejects, staged[1]), True), *lines]
    _say_files(said, staged, finals)


def _score_into_db(run, model, dest, *, if_exists: str, psi_threshold: float, summary=None) -> None:
    """The end of ``score`` for a database ``dest``: scores, rejects and drift written to the tables NAME,
    NAME_rejects and NAME_drift in one transaction (a run without drift rows drops NAME_drift); prints
    ``summary(result, table)`` (default: the result's summary)."""
    from churnguard.scoring import drift_check

    def drift(result, names, path):
        check = drift_check(model, result.drift_sample, threshold=psi_threshold)
        return {names[2]: check.table}, [(check.write(path), not check.shifted.empty)]

    _into_db(run, dest, if_exists=if_exists,
             summary=summary or (lambda result, table: result.summary(table)), extra=drift)


@app.command("train-uplift", epilog=_URLS)
def train_uplift(
    campaigns: Annotated[Source, _Opt("--campaigns", **_IN, help=f"Campaigns file{_DB} (customer_id, sent_at, "
                                      "action, treated; optional campaign_id, cost) or the scores of a past "
                                      "'score' run.")],
    transactions: TxOpt = None,
    tickets: TicketsOpt = None,
    customers: CustomersOpt = None,
    horizon_days: Annotated[int, _Opt(min=1, help="Outcome: a purchase within this many days after sent_at.")] = 90,
    model_out: Annotated[Path, _Opt("--model-out", "-o", help="Where to write the uplift model file.")] = Path(
        "models/uplift_model.zip"),
    min_customers: Annotated[int, _Opt(min=1, metavar="N", help="Learn an action's uplift only from at least N "
                                       "contacted and N control customers; else use its measured average "
                                       "effect.")] = 200,
    config: ConfigOpt = None,
    tracking_uri: Annotated[str | None, _Opt(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                             "sqlite:///mlflow.db).")] = None,
    experiment: Annotated[str | None, _Opt(help="MLflow experiment name (overrides config).")] = None,
) -> None:
    """Learn from past campaigns with a control group which customers each action keeps (uplift); track the
    scorecard (Qini of uplift vs risk vs random ranking on held-out customers) in MLflow."""
    from churnguard.config import load_config
    from churnguard.dataset import load_campaigns, load_tables
    from churnguard.uplift import train_uplift as train_fn

    cfg = _run(load_config, config)
    cfg = _run(cfg.with_overrides, tracking={"tracking_uri": tracking_uri, "experiment": experiment})
    transactions, tickets, customers = _inputs(cfg.data, transactions, tickets, customers)
    _outputs_apart({"--model-out": model_out}, _named_inputs(transactions, tickets, customers, campaigns=campaigns,
                                                             config=config))
    with _steps() as (step, _):
        step("Reading and validating input")
        tables = _run(load_tables, transactions, tickets, customers, config=cfg.data)
        rows = _run(load_campaigns, campaigns, config=cfg.data)
        step("learning from the campaigns")
        result = _run(train_fn, tables, rows, cfg, model_out=model_out, horizon_days=horizon_days,
                      min_customers=min_customers)
    _say(result.summary())


@app.command("serve", epilog=_URLS)
def serve(
    model: Annotated[Path, _Opt("--model", "-m", help="Model file written by 'churnguard train'.")],
    host: Annotated[str, _Opt(help="Address to listen on. Anything but loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, _Opt(help="Port to listen on.")] = 8000,
    workers: Annotated[int, _Opt(min=1, help="Worker processes.")] = 1,
    playbook: Annotated[Path | None, _Opt("--playbook", help="Playbook YAML (default: built-in).")] = None,
    token: Annotated[str | None, _Opt(envvar="CHURNGUARD_API_TOKEN", show_default=False,
                                      help="Clients must send 'Authorization: Bearer TOKEN' (every path but "
                                           "/health). Needed when --host is not loopback.")] = None,
    quiet: Annotated[bool, _Opt("--quiet", "-q", help="No line per request.")] = False,
    scores: Annotated[Source | None, _Opt("--scores", "-s", **_IN, help=f"Scores file{_DB} of 'churnguard "
                                          "score': adds the retention team's pages at / (at-risk list, "
                                          "customers).")] = None,
    previous: Annotated[Source | None, _Opt(**_IN, help="With --scores: an earlier scores file or table, for "
                                            "each customer's risk movement.")] = None,
    readout: Annotated[Source | None, _Opt(**_IN, help="With --scores: a 'campaign-readout' table for the "
                                           "campaign page.")] = None,
    transactions: Annotated[Source | None, _Opt("--transactions", "-t", **_IN, help="With --scores: the "
                                                "transactions, for each customer's purchases chart.")] = None,
    tickets: Annotated[Source | None, _Opt(**_IN, help="With --scores: the support tickets, listed per "
                                           "customer.")] = None,
    header_timeout: Annotated[float, _Opt(metavar="<seconds>", help="Close a connection whose request headers "
                                          "are not complete within this time.")] = 10.0,
    uplift_model: ServeUpliftOpt = None,
) -> None:
    """Serve predictions over HTTP from a model file (needs the 'serve' extra). API description at /docs; with
    --scores, pages for the retention team at /."""
    try:
        import uvicorn
    except ImportError:
        _fail("serving needs the 'serve' extra: pip install 'churnguard[serve]'")
    from churnguard.config import load_playbook
    from churnguard.model import ChurnModel

    _check_serve_options(host, token, header_timeout)
    _page_files({"scores": scores, "previous": previous, "readout": readout, "transactions": transactions,
                 "tickets": tickets})
    book = _run(load_playbook, playbook)  # fail fast, with a clear message, before starting workers
    loaded = _run(ChurnModel.load, model)  # likewise
    info = loaded.require_info()
    _serve_uplift(uplift_model)
    _check_pages(scores, previous, readout, transactions, tickets, loaded, book)
    _hand_to_workers(model, playbook, token)
    _say(f"serving {model} (model version {info.model_version}, trained as of {info.training_window['as_of']}) "
         f"on http://{host}:{port} with {workers} worker(s); API description at http://{host}:{port}/docs; "
         "Ctrl+C stops")
    if scores is not None:
        _say(f"pages for the retention team: http://{host}:{port}/ (scores {scores})")
    from churnguard.serving import spread
    from churnguard.serving.protocol import header_timeout_protocol

    with spread.board_file(workers) if workers > 1 else contextlib.nullcontext() as board:
        if board is not None:  # the workers' connection counts, to spread the connections evenly
            os.environ[spread.ENV] = board
        uvicorn.run("churnguard.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="warning" if quiet else "info", access_log=not quiet, timeout_keep_alive=5,
                    http=header_timeout_protocol(header_timeout))
    _say("server stopped")


def _check_serve_options(host: str, token: str | None, header_timeout: float) -> None:
    """A token is set (and long) when the server is reachable from other machines; the header deadline is
    positive."""
    if not token and not _loopback(host):
        _fail(f"--host {host} lets other machines reach the API: set a token with --token or "
              "CHURNGUARD_API_TOKEN (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if token and len(token) < 16:
        _fail("the token is shorter than 16 characters: use a long random one "
              "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if not header_timeout > 0:
        _fail(f"--header-timeout must be more than 0 seconds, got {header_timeout:g}")


def _hand_to_workers(model: Path, playbook: Path | None, token: str | None) -> None:
    """The model file, the playbook and the API token, for the server's worker processes (in the environment,
    which they inherit)."""
    _to_workers("model", model)
    _to_workers("playbook", playbook)
    os.environ["CHURNGUARD_API_TOKEN"] = token or ""


def _to_workers(name: str, value: Any) -> None:
    """Hand an input to the server's worker processes in ``CHURNGUARD_SERVE_<NAME>``: a file's absolute path or
    a database URL (unset for None)."""
    os.environ.pop(f"CHURNGUARD_SERVE_{name.upper()}", None)
    if value is not None:
        os.environ[f"CHURNGUARD_SERVE_{name.upper()}"] = str(value.resolve() if isinstance(value, Path) else value)


def _serve_uplift(path: Path | None) -> None:
    """Check the uplift model file (a clear message before starting workers) and hand it to the server's
    workers."""
    from churnguard.uplift import UpliftModel

    _to_workers("uplift", path)
    if path is not None:
        uplift = _run(UpliftModel.load, path)
        _say(f"uplift model {path} (actions {', '.join(uplift.actions)}): POST /predict chooses actions and "
             "selects by incremental value")


def _page_files(files: dict[str, Any]) -> None:
    """Check the pages' files and hand them to the server's workers."""
    from churnguard.serving.page_data import PageSources, check_sources

    given = [f"--{k}" for k, v in files.items() if v is not None and k != "scores"]
    if files["scores"] is None and given:
        _fail(f"{', '.join(given)} add(s) to the pages, which need --scores")
    if files["scores"] is not None:
        _run(check_sources, PageSources(**files))
    for name, path in files.items():
        _to_workers(name, path)


def _check_pages(scores, previous, readout, transactions, tickets, model, playbook) -> None:
    """Read the pages' files as the server will (``load_pages``), so that bad data stops here with its message
    rather than in the server's start, in a traceback; what was read is let go before the server starts."""
    if scores is None:
        return
    from churnguard.serving.page_data import PageSources
    from churnguard.serving.pages import load_pages

    _run(load_pages, PageSources(scores, previous, readout, transactions, tickets), model, playbook, token=False)


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command("convert-model")
def convert_model(
    old: Annotated[Path, typer.Argument(help="Model file of the old pickle-based format (e.g. churn_model.joblib).")],
    new: Annotated[Path, typer.Argument(help="Where to write the converted model file (e.g. churn_model.zip).")],
) -> None:
    """Convert a model file of the old pickle-based format once, into the current data-only format.

    The old file is unpickled only after its signature checks against the key it was signed with
    ($CHURNGUARD_MODEL_KEY, else the key file $CHURNGUARD_KEY_FILE or ~/.config/churnguard/model.key), so run
    this on a machine that holds that key. The new file needs no key: loading it never runs code.
    """
    from churnguard.model import convert_model_file

    out = _run(convert_model_file, old, new)
    _console().print(f"converted {old} -> {out}", highlight=False)


@app.command("report", epilog=_URLS)
def report(
    transactions: TxOpt = None,
    tickets: TicketsOpt = None,
    customers: CustomersOpt = None,
    events: EventsOpt = None,
    period: Annotated[str, _Opt(help="month or quarter.")] = "month",
    out: Annotated[Path, _Opt("--out", "-o", help="Directory for report.html and the CSV tables.")] = Path("report"),
    active_days: Annotated[int, _Opt(min=1, help="A customer is active with a purchase in this many days.")] = 365,
    model: Annotated[Path | None, _Opt("--model", "-m", help="Add a drift section: today's features vs this "
                                       "model's training data.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Monthly or quarterly retention KPIs (CRR, churn, CLTV, ARPU, NPS, CSAT, lifecycle, cohorts) as HTML + CSV."""
    from churnguard._io.files import check_output_dir
    from churnguard.config import load_config
    from churnguard.dataset import load_tables, write_rejects
    from churnguard.model import ChurnModel
    from churnguard.reporting.kpis import build_report, write_report
    from churnguard.scoring import tables_drift

    if period not in ("month", "quarter"):
        _fail(f"--period must be month or quarter, got {period!r}")
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} is a file: the report is a directory of files (report.html and its tables); name a "
              "directory")
    _run(check_output_dir, out)
    cfg = _run(load_config, config)
    transactions, tickets, customers, events = _inputs(cfg.data, transactions, tickets, customers, events)
    console = _console()
    with console.status("Reading and validating input"):
        tables = _run(load_tables, transactions, tickets, customers, config=cfg.data, events=events)
    if model is not None:
        with console.status("Comparing today's customers with the model's training data"):
            drift = _run(tables_drift, _run(ChurnModel.load, model), tables)
    else:
        drift = None
    with console.status("Computing the report"):
        rep = _run(build_report, tables, period=period, active_days=active_days, drift=drift,
                   session_gap_minutes=cfg.features.session_gap_minutes)
        paths = write_report(rep, out)
    _say(rep.summary())
    _say(f"written: {paths['report']} (+ {', '.join(p.name for k, p in paths.items() if k != 'report')})")
    rejects = out / "rejects.csv"
    said = write_rejects(tables.rejects, rejects)  # the rows data.on_bad_rows: reject set aside
    if said is None:
        rejects.unlink(missing_ok=True)  # an earlier report's
    _say(said, warn=True)


@app.command("compare")
def compare(
    old: Annotated[Path, typer.Argument(help="Earlier scores file (.csv or .parquet) from 'churnguard score'.")],
    new: Annotated[Path, typer.Argument(help="Later scores file.")],
    out: Annotated[Path | None, _Opt("--out", "-o", callback=_table_out,
                                     help="Per-customer changes (default: <new>.changes.csv).")] = None,
    top: Annotated[int, _Opt(min=1, help="How many risers and fallers to print.")] = 10,
) -> None:
    """Whose risk moved most between two scoring runs, band transitions, and new high-risk customers."""
    from churnguard._io.write import write_table
    from churnguard.reporting.monitoring import compare_scores, plot_transitions
    from churnguard.scoring import read_scores

    _need_scores_files(old, new)
    out = out or new.with_name(new.stem + ".changes.csv")
    files = {"--out": out, **{f"the {part[1:]} file": out.with_name(out.stem + part)
                              for part in (".transitions.csv", ".new_high_risk.csv", ".transitions.png")}}
    _outputs_apart(files, {"OLD_SCORES": old, "NEW_SCORES": new})
    comparison = _run(compare_scores, _run(read_scores, old), _run(read_scores, new), top=top)
    paths = iter(files.values())
    write_table(comparison.changes, next(paths))
    write_table(comparison.transitions.reset_index(), next(paths))
    write_table(comparison.new_high_risk, next(paths))
    plot_transitions(comparison, next(paths))
    console = _console()
    console.print(comparison.summary(), highlight=False)
    console.print(f"written: {out} (+ .transitions.csv, .new_high_risk.csv, .transitions.png)", highlight=False)


@app.command("campaign-readout", epilog=_URLS)
def campaign_readout(
    scores: Annotated[Source, _Opt("--scores", "-s", **_IN, help=f"Scores file{_DB} of the past run whose "
                                   "selection was acted on.")],
    transactions: Annotated[Source, _Opt("--transactions", "-t", **_IN, help=f"Transactions{_DB}, up to at least "
                                         "as_of + horizon.")],
    horizon_days: Annotated[int, _Opt(min=1, help="Outcome window after as_of, in days.")] = 90,
    confidence: Annotated[float, _Opt(min=0.5, max=0.999, help="Confidence level of the intervals.")] = 0.95,
    out: Annotated[Path | None, _Opt("--out", "-o", callback=_table_out,
                                     help="Read-out table (default: <scores>.readout.csv; for a scores table "
                                     "NAME, NAME.readout.csv).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Did the campaign work? Retention of contacted vs control customers per action, with confidence intervals."""
    import pandas as pd
    from rich import box
    from rich.table import Table

    from churnguard._io.write import write_table
    from churnguard.config import load_config
    from churnguard.dataset import load_tables
    from churnguard.reporting.monitoring import campaign_readout as readout_fn
    from churnguard.reporting.monitoring import plot_readout

    cfg = _run(load_config, config)
    (transactions,) = _inputs(cfg.data, transactions)
    scored, out = _past_scores(scores, out, transactions=transactions, config=config)
    tables = _run(load_tables, transactions, config=cfg.data)
    table = _run(readout_fn, scored, tables.transactions, horizon_days=horizon_days, confidence=confidence)
    write_table(table, out)
    plot_readout(table, out.with_suffix(".png"), confidence=confidence)

    def pct(v: float, sign: str = "") -> str:
        return "-" if pd.isna(v) else f"{v:{sign}.1%}"

    rows = [[str(r.action), f"{r.n_contacted:,}", f"{r.n_control:,}", pct(r.retention_contacted),
             pct(r.retention_control), pct(r.uplift, "+"), f"{pct(r.ci_low, '+')}..{pct(r.ci_high, '+')}",
             pct(r.observed_success_rate)] for r in table.itertuples()]
    title = f"Campaign read-out ({horizon_days}-day window, {confidence:.0%} intervals)"
    names = ("action", "contacted", "control", "kept", "kept ctrl", "uplift", "interval", "success")
    widths = [max(*(len(row[i]) for row in rows), *map(len, name.split())) + 2 for i, name in enumerate(names)]
    console = _console()
    if sum(widths) + 4 <= console.width:  # numbers are never cut: a narrow terminal gets one block per action
        view = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1))
        for i, col in enumerate(names):
            view.add_column(col, justify="left" if i == 0 else "right", overflow="fold", min_width=widths[i] - 2)
        for row in rows:
            view.add_row(*row)
        console.print(view)
    else:
        console.print(title, highlight=False)
        for a, n1, n0, k1, k0, up, ci, ok in rows:
            console.print(f"{a}\n  contacted {n1}, control {n0}; kept {k1} vs {k0} (control)\n  uplift {up} "
                          f"(interval {ci}), success rate {ok}", highlight=False, soft_wrap=True)
    for r in table.itertuples():
        if r.note:
            console.print(f"  note - {r.action}: {r.note}", highlight=False)
    console.print(f"written: {out} and {out.with_suffix('.png')}", highlight=False)


def _past_scores(scores, out: Path | None, **inputs):
    """The scores of a past run (a file or a database table) and where the read-out goes (``out``; default:
    beside the scores file, or ``NAME.readout.csv`` for a table NAME), which must be none of the files ``scores``
    and ``inputs`` (option name -> source) name."""
    from churnguard.scoring import read_scores
    from churnguard.sources import is_url, read_source

    if is_url(scores):
        out = out or Path(f"{scores.table}.readout.csv")
    else:
        _need_scores_files(scores)
        out = out or scores.with_name(scores.stem + ".readout.csv")
    _outputs_apart({"--out": out, "the chart": out.with_suffix(".png")}, _named_inputs(scores=scores, **inputs))
    return _run(read_source, scores) if is_url(scores) else _run(read_scores, scores), out


def _outputs_apart(outputs: dict[str, Any], inputs: dict[str, Any]) -> None:
    """Stop before any work when an output (option name -> path) is one of the input files (option name ->
    path or database source): writing it would replace that input, and the data with it; or when two outputs
    are one file (``--rejects`` on ``--out``): one would replace the other."""
    from churnguard._io.files import check_output_dir

    seen: dict[Path, str] = {}
    for out_name, out in outputs.items():
        if isinstance(out, Path):
            _run(check_output_dir, out.parent)
            if (same := seen.get(out.resolve())) is not None:
                _fail(f"{out_name} {out} is also {same}: each output needs a path of its own")
            seen[out.resolve()] = out_name
    for out_name, out in outputs.items():
        if not isinstance(out, Path) or not out.is_file():
            continue
        for in_name, source in inputs.items():
            if isinstance(source, Path) and source.is_file() and os.path.samefile(out, source):
                _fail(f"{out_name} {out} is the {in_name} file: writing it would replace that input; "
                      "choose another output path")


def _named_inputs(*tables, **others) -> dict[str, Any]:
    """The input tables (transactions, then tickets, customers and events, as many as given) and ``others`` by
    their option names (``uplift_model`` -> ``--uplift-model``), for :func:`_outputs_apart`."""
    named = {f"--{name}": source for name, source in zip(_TABLES, tables, strict=False)}
    return named | {f"--{name.replace('_', '-')}": value for name, value in others.items()}


def _need_scores_files(*paths: Path) -> None:
    for p in paths:
        if not p.is_file():
            _fail(f"{p}: scores file not found")


def _say_files(said: list[tuple[str | None, bool]], staged: tuple[Path, ...], finals: tuple) -> None:
    """Print the lines (each with whether it warns) a library function wrote about files in ``staged``, naming
    their ``finals`` instead."""
    for line, warn in said:
        for s, f in zip(staged, finals, strict=True):
            line = None if line is None else line.replace(str(s), str(f))
        _say(line, warn=warn)


def _flowing_help() -> None:
    """Each command's help from its docstring with the paragraphs' lines joined, so that the terminal wraps them
    (Typer's rich help keeps a docstring's line breaks, which then break lines mid-sentence)."""
    for info in app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            paragraphs = inspect.cleandoc(info.callback.__doc__).split("\n\n")
            info.help = "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


_flowing_help()


def main() -> None:
    """Console-script entry point. SIGTERM ends a command as an error would (exit 143): what it was writing is
    removed, the previous outputs stay and an MLflow run in progress is marked FAILED."""
    from churnguard._io.cores import keep_freed_memory, short_blas_spin
    from churnguard._io.files import stop_on_signal

    signal.signal(signal.SIGTERM, stop_on_signal)
    short_blas_spin()
    keep_freed_memory()
    sys.exit(app())


if __name__ == "__main__":
    main()
