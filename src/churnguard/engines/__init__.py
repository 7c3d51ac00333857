"""Engines move data in and out of the one feature kernel and rule set: ``local`` (files, in partitions by
customer, in this process) and ``dask`` (customer partitions on a Dask cluster). The HTTP server's path is in
``churnguard.serving``.

Each job has one entry point here that takes the engine's name and returns the same result type whichever
engine ran it.

Progress goes to two callbacks: ``on_step(description, done=None, total=None)`` says what is being done now
(for a spinner or a progress bar) and ``on_note(line)`` gives a line worth keeping, such as where the cluster
runs. Nothing heavy is imported until a job runs, so the command line starts at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

    from churnguard.config import Config, DataConfig, Playbook
    from churnguard.engines.dask import DaskTables
    from churnguard.engines.local import FeaturesResult
    from churnguard.model import ChurnModel
    from churnguard.scoring import ScoreResult
    from churnguard.training.run import TrainResult

__all__ = [
    "ENGINES",
    "build_features_from_files",
    "check_engine",
    "dask_client",
    "read_on_cluster",
    "score_from_files",
]

ENGINES = ("local", "dask")


def _quiet(*_args: object, **_kwargs: object) -> None:
    return None


def check_engine(engine: str, scheduler: str | None, workers: int | None, **paths: Path | None) -> bool:
    """Check the engine options (and, for the local engine, that inputs are files); True for the dask engine.

    Raises:
        ValueError: an unknown engine, an option of the other engine, a missing input or the missing extra.
    """
    if engine not in ENGINES:
        raise ValueError(f"--engine must be local or dask, got {engine!r}")
    from churnguard.sources import DbSource

    paths = {n: p for n, p in paths.items() if not isinstance(p, DbSource)}  # their workers read the tables
    if engine == "local":
        for flag, given in (("--scheduler", scheduler), ("--workers", workers)):
            if given is not None:
                raise ValueError(f"{flag} is an option of the dask engine: add --engine dask (the default engine, "
                                 "local, runs in this process)")
        for name, path in paths.items():
            if path is not None and path.is_dir():
                raise ValueError(f"{path}: the {name} path is a directory; the local engine reads one .csv or "
                                 ".parquet file, a directory of Parquet files needs --engine dask")
        return False
    if scheduler is not None and workers is not None:
        raise ValueError("--workers sizes the local cluster started when no --scheduler is given; a scheduler's "
                         "workers are started with the scheduler")
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise ValueError("the dask engine needs the 'dask' extra: pip install 'churnguard[dask]'") from None
    for name, path in paths.items():  # before starting a cluster; the workers read the files
        if path is not None and not path.exists():
            raise ValueError(f"{path}: {name} file not found")
    return True


@contextmanager
def dask_client(scheduler: str | None, workers: int | None, *, on_step: Callable = _quiet,
                on_note: Callable = _quiet) -> Iterator[Client]:
    """A client of the scheduler (or of a local cluster started for it, ``workers`` processes), closed on exit."""
    from churnguard.engines.dask import connect, describe

    on_step(f"Connecting to the Dask scheduler at {scheduler}" if scheduler else "Starting a local Dask cluster")
    with connect(scheduler, n_workers=workers) as client:
        on_note(describe(client, scheduler))
        yield client


def read_on_cluster(client: Client, transactions: Path, tickets: Path | None, customers: Path | None,
                    config: DataConfig, *, partitions: int | None = None, feature_inputs_only: bool = False,
                    on_step: Callable = _quiet, on_note: Callable = _quiet, events: Path | None = None
                    ) -> DaskTables:
    """Read, validate and partition the input by customer on the cluster (see ``read_tables_dask``)."""
    from churnguard.engines.dask import read_tables_dask

    on_step("Reading, validating and partitioning the input by customer on the cluster")
    dtables = read_tables_dask(transactions, tickets, customers, config=config, client=client,
                               npartitions=partitions, feature_inputs_only=feature_inputs_only, events=events)
    on_note(dtables.summary())
    return dtables


@contextmanager
def _on_cluster(paths: tuple[Path, Path | None, Path | None, Path | None], config: DataConfig, scheduler: str | None,
                workers: int | None, on_step: Callable, on_note: Callable, **read: object) -> Iterator[DaskTables]:
    """The tables (transactions, tickets, customers, events) read on a cluster, closed on exit."""
    with (dask_client(scheduler, workers, on_step=on_step, on_note=on_note) as client,
          read_on_cluster(client, *paths[:3], config, on_step=on_step, on_note=on_note, events=paths[3],
                          **read) as dtables):
        yield dtables


def build_features_from_files(engine: str, transactions: Path, tickets: Path | None, customers: Path | None, *,
                              as_of: str | None, out: Path, config: Config, scheduler: str | None = None,
                              workers: int | None = None, partitions: int | None = None, on_step: Callable = _quiet,
                              on_note: Callable = _quiet, events: Path | None = None) -> FeaturesResult:
    """Point-in-time features of the customers in the files as of ``as_of`` (default: the last day with a
    transaction), written to ``out`` atomically. Only the columns the features read are read and checked
    (``dataset.FEATURE_INPUTS``), as ``score`` reads them, so both commands set aside the same rows.

    The local engine builds them in memory (``partitions`` 1), or with more ``partitions`` by customer
    partition, two at a time on two cores (``churnguard.engines.local.features_files``); the features are the
    same. Without ``partitions``, input files too large for one partition
    (``churnguard.engines.local.input_partitions``: more than ~256 MB or ~4.2M rows,
    ``FEATURES_ROWS_PER_PARTITION``) are built in that many partitions.
    """
    from churnguard._io.write import write_table
    from churnguard.engines.local import FeaturesResult
    from churnguard.features import to_day
    from churnguard.scoring.score import emptied_customers, unscored_rejects, unseen_customers
    from churnguard.sources import DbSource

    paths = [p for p in (transactions, tickets, customers, events) if p is not None]
    if engine == "local" and partitions is None and not any(isinstance(p, DbSource) for p in paths):
        from churnguard.engines.local import FEATURES_ROWS_PER_PARTITION, input_partitions

        partitions = input_partitions(paths, rows_per_partition=FEATURES_ROWS_PER_PARTITION)
    if engine == "local" and partitions is not None and partitions > 1:
        from churnguard.engines.local import features_files

        on_step("Building features by customer partition")
        return features_files(transactions=transactions, tickets=tickets, customers=customers, events=events,
                              out=out, data_config=config.data, feature_config=config.features, as_of=as_of,
                              partitions=partitions, on_step=on_step)
    if engine == "dask":
        from churnguard.engines.dask import features_and_unseen_dask

        with _on_cluster((transactions, tickets, customers, events), config.data, scheduler, workers, on_step,
                         on_note, partitions=partitions, feature_inputs_only=True) as dtables:
            day = to_day(as_of) if as_of is not None else dtables.last_date()
            on_step(f"Building features as of {day.date()} on the cluster")
            feats, unseen = features_and_unseen_dask(dtables, day, config.features)
            rejects = dtables.rejects
    else:
        from churnguard.dataset import load_tables
        from churnguard.features import build_features

        on_step("Reading and validating input")
        tables = load_tables(transactions, tickets, customers, config=config.data, events=events,
                             feature_inputs_only=True)
        day = to_day(as_of) if as_of is not None else tables.last_date()
        on_step(f"Building features as of {day.date()}")
        feats = build_features(tables, day, config.features)
        unseen, rejects = unseen_customers(tables, feats["customer_id"]), tables.rejects
    return FeaturesResult(unscored_rejects(rejects, unseen, day), write_table(feats, out), len(feats),
                          feats.shape[1] - 2, len(unseen), emptied_customers(rejects, [feats["customer_id"], unseen]))


def score_from_files(engine: str, model: ChurnModel, transactions: Path, tickets: Path | None,
                     customers: Path | None, *, out: Path, playbook: Playbook, as_of: str | None = None,
                     budget: float | None = None, control_fraction: float = 0.1, seed: int = 0,
                     reject_bad_rows: bool = False, partitions: int | None = None, scheduler: str | None = None,
                     workers: int | None = None, data_config: DataConfig | None = None,
                     on_step: Callable = _quiet, on_note: Callable = _quiet, events: Path | None = None) -> ScoreResult:
    """Score the customers in the files and write ``out`` atomically; the result holds the summary columns
    of the scores (the full rows are in ``out``), the rejects and the drift sample.

    The input is read with ``data_config`` (default: the model's; ``reject_bad_rows``: set unusable rows aside
    instead of stopping) and split into ``partitions`` customer partitions (default: by input size).
    """
    from churnguard.sources import DbSource

    data_config = data_config or model.require_info().config.data
    if reject_bad_rows:
        data_config = data_config.model_copy(update={"on_bad_rows": "reject"})
    choice = {"budget": budget, "control_fraction": control_fraction, "seed": seed}
    if engine == "dask":
        from churnguard.engines.dask import score_dask

        with _on_cluster((transactions, tickets, customers, events), data_config, scheduler, workers, on_step,
                         on_note, partitions=partitions, feature_inputs_only=True) as dtables:
            on_step("scoring on the cluster")
            return score_dask(model, dtables, as_of, playbook, out=out, on_step=on_step, **choice)
    if partitions is None and any(isinstance(p, DbSource) for p in (transactions, tickets, customers, events)):
        return _score_db_tables(model, (transactions, tickets, customers, events), data_config, as_of=as_of,
                                out=out, playbook=playbook, on_step=on_step, **choice)
    from churnguard.engines.local import score_files

    on_step("scoring")
    return score_files(model, transactions=transactions, tickets=tickets, customers=customers, events=events, out=out,
                       playbook=playbook, data_config=data_config, as_of=as_of, partitions=partitions,
                       on_partition=lambda done, total: on_step(f"partition {done}/{total}", done, total),
                       **choice)


def _score_db_tables(model: ChurnModel, inputs: tuple, data_config: DataConfig, *,
                     as_of: str | None, out: Path, playbook: Playbook, on_step: Callable, **choice: object
                     ) -> ScoreResult:
    """:func:`score_from_files` when an input is a database table and no ``partitions`` are asked for: the
    tables (only the columns the features read) validated and scored in memory, the scores written to ``out``."""
    from churnguard._io.write import write_table
    from churnguard.dataset import load_tables
    from churnguard.scoring import score_tables

    on_step("Reading and validating input")
    tables = load_tables(*inputs[:3], config=data_config, feature_inputs_only=True, events=inputs[3])
    on_step("scoring")
    result = score_tables(model, tables, as_of, playbook, **choice)
    write_table(result.scores, out)
    return result


def train_from_files(engine: str, transactions: Path | None, tickets: Path | None, customers: Path | None, *,
                     config: Config, config_text: str, model_out: Path, as_of: str | None = None,
                     demo_customers: int = 5000, scheduler: str | None = None, workers: int | None = None,
                     on_step: Callable = _quiet, on_note: Callable = _quiet, events: Path | None = None
                     ) -> tuple[TrainResult, pd.DataFrame]:
    """Train, evaluate, save and track a model on the files (the local engine without files: on generated demo
    data); returns the training result and the input rows set aside."""
    if engine == "dask":
        from churnguard.engines.dask import train_dask

        if transactions is None:
            raise ValueError("--engine dask trains on files: give --transactions (write demo files with "
                             "'churnguard demo-data')")
        with _on_cluster((transactions, tickets, customers, events), config.data, scheduler, workers, on_step,
                         on_note) as dtables:
            on_step("training on the cluster")
            return train_dask(dtables, config, model_out=model_out, as_of=as_of, config_text=config_text,
                              on_step=on_step), dtables.rejects
    from churnguard.training.run import run_training

    on_step("Reading and validating input")
    tables = _local_tables((transactions, tickets, customers, events), config, demo_customers, on_note)
    return run_training(tables, config, model_out=model_out, as_of=as_of, config_text=config_text,
                        on_step=on_step), tables.rejects


def _local_tables(paths: tuple[Path | None, ...], config: Config, demo_customers: int, on_note: Callable):
    """The tables of the paths (transactions, tickets, customers, events), or without transactions the demo's."""
    from churnguard.dataset import load_tables, validate_tables

    transactions, tickets, customers, events = paths
    if transactions is not None:
        return load_tables(transactions, tickets, customers, config=config.data, events=events)
    if tickets or customers or events:
        raise ValueError("--tickets, --customers and --events need --transactions")
    from churnguard.demo import generate_demo_data

    demo = generate_demo_data(demo_customers, seed=7)
    on_note(f"No data given: training on generated demo data ({demo_customers:,} customers).")
    return validate_tables(demo.transactions, demo.tickets, demo.customers, config=config.data,
                           sources={"transactions": "demo transactions", "tickets": "demo tickets",
                                    "customers": "demo customers"})

