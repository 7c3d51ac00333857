"""Batch scoring of files larger than memory comfortably allows, partitioned by customer.

The steps of :mod:`churnguard.engines.partitions`, one after another in this process: the files are read in
chunks twice (a census, then the split by customer), the pieces spilled to uncompressed Arrow IPC files in a
work directory beside the output (:func:`churnguard._io.work_dir`: removed when the run ends, or by the next
run there when this one was killed), and the buckets validated and scored one at a time (memory: about
1/partitions of the data). Population quantities (lifespan, VIP threshold, BG/NBD parameters) come from the
model, so the scores do not depend on the partitioning; the selection is drawn over all customers and the
output written atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard._io import appending_table, work_dir
from churnguard.dataset import last_day
from churnguard.engines import partitions as parts
from churnguard.scoring import ScoreResult, score_tables, select_customers
from churnguard.scoring.score import LIGHT_COLUMNS, SELECTION_COLUMNS, file_rows, unseen_customers
from churnguard.sources import DbSource

if TYPE_CHECKING:
    import pyarrow as pa

    from churnguard.config import DataConfig, Playbook
    from churnguard.model import ChurnModel

__all__ = ["auto_partitions", "score_files"]

logger = logging.getLogger(__name__)

_BYTES_PER_PARTITION = 256 * 1024 * 1024
_DRIFT_ROWS = 200_000


def auto_partitions(paths: list[Path]) -> int:
    """One partition per ~256 MB of input."""
    size = sum(p.stat().st_size for p in paths)
    return max(1, int(np.ceil(size / _BYTES_PER_PARTITION)))


def score_files(
    model: ChurnModel,
    *,
    transactions: Path,
    tickets: Path | None,
    customers: Path | None,
    out: Path,
    events: Path | None = None,
    playbook: Playbook,
    data_config: DataConfig,
    as_of: str | pd.Timestamp | None = None,
    budget: float | None = None,
    control_fraction: float = 0.1,
    seed: int = 0,
    partitions: int | None = None,
    on_partition: Callable[[int, int], None] = lambda done, total: None,
) -> ScoreResult:
    """Score the customers in the files and write ``out`` atomically (see the module docstring).

    Returns the rejects and, to keep memory bounded, only the summary columns of the scores
    (``churnguard.scoring.score.LIGHT_COLUMNS`` and the selection's); the full rows are in ``out``.

    Raises:
        DataError: as ``load_tables``, with counts and row numbers over whole files.
    """
    from churnguard.features import to_day
    from churnguard.scoring.score import unscored_rejects

    paths = {"transactions": transactions, "tickets": tickets, "customers": customers, "events": events}
    sources = parts.plan_inputs(paths, data_config, feature_inputs_only=True, db_parts=partitions or 1)
    n = partitions or auto_partitions([Path(p) for p in paths.values()
                                       if p is not None and not isinstance(p, DbSource)])
    with work_dir(Path(out).parent) as work:
        census = {t: [parts.census(parts.read_chunk(c, parts.census_columns(s, data_config)), s, data_config)
                      for c in s.chunks] for t, s in sources.items()}
        spec = parts.decide(sources, census, data_config)
        _split(spec, n, work)
        latest = pd.Series([c.last for c in census["transactions"]], dtype="datetime64[ns]")
        day = to_day(as_of) if as_of is not None else last_day(latest)
        run = _score_buckets(model, spec, n, work, day, playbook, on_partition)
        found = last_day(pd.Series(run.latest, dtype="datetime64[ns]"))
        if as_of is None and found != day and not parts.doomed(spec, run.digests):  # another style, or set aside
            day, run = found, _score_buckets(model, spec, n, work, found, playbook, on_partition)
        rejects = parts.merge_rejects(spec, run.rejects, parts.bad_rows(spec, run.digests))
        light = pd.concat([pd.read_parquet(p, columns=LIGHT_COLUMNS) for p in run.scored], ignore_index=True)
        light = select_customers(light, budget=budget, control_fraction=control_fraction, seed=seed)
        _write_parts(run.scored, light.set_index("customer_id")[SELECTION_COLUMNS], Path(out))
    rejects = unscored_rejects(rejects, pd.Index(np.concatenate(run.unseen)), day)
    return ScoreResult(light, rejects, pd.concat(run.samples, ignore_index=True) if run.samples else None, day)


def _split(spec: parts.Spec, n: int, work: Path) -> None:
    """Split every chunk into ``n`` buckets, spilled to ``{table}-{bucket}-{chunk}.arrow`` in ``work`` (empty
    pieces only of the first chunk, for the columns), and check the date styles."""
    import pyarrow as pa

    stats = {t: [] for t in spec.sources}
    for t, src in spec.sources.items():
        for i, chunk in enumerate(src.chunks):
            pieces, stats_i = parts.split_chunk(parts.read_chunk(chunk, src.columns), spec, t, i, n)
            stats[t].append(stats_i)
            for b, piece in enumerate(pieces):
                if len(piece) or i == 0:
                    with pa.ipc.new_file(str(work / f"{t}-{b}-{i}.arrow"), piece.schema) as writer:
                        writer.write_table(piece)
    parts.check_styles(spec, stats)


def _bucket(spec: parts.Spec, work: Path, b: int) -> dict[str, list[pa.Table]]:
    """The pieces of bucket ``b``, in file order."""
    import pyarrow as pa

    paths = {t: [work / f"{t}-{b}-{i}.arrow" for i in range(len(s.chunks))] for t, s in spec.sources.items()}
    return {t: [pa.ipc.open_file(pa.memory_map(str(p))).read_all() for p in ps if p.exists()]
            for t, ps in paths.items()}


@dataclass(frozen=True)
class _Run:
    """What scoring the buckets left: each bucket's scores file, unscored ids, drift sample, validation rejects
    and their digest, and its last transaction time."""

    scored: list[Path] = field(default_factory=list)
    unseen: list[np.ndarray] = field(default_factory=list)
    samples: list[pd.DataFrame] = field(default_factory=list)
    rejects: list[pd.DataFrame] = field(default_factory=list)
    digests: list = field(default_factory=list)
    latest: list[pd.Timestamp] = field(default_factory=list)


def _score_buckets(model: ChurnModel, spec: parts.Spec, n: int, work: Path, day: pd.Timestamp, playbook: Playbook,
                   on_partition: Callable[[int, int], None]) -> _Run:
    """Validate and score the buckets one at a time; once the bad-row policy is sure to raise (or there is no
    day to score as of), the rest are only validated, for the counts of the error."""
    run = _Run()
    for b in range(n):
        tables = parts.validate_partition(_bucket(spec, work, b), spec, coded_ids=True)
        run.digests.append(parts.reject_digest(tables))
        run.rejects.append(tables.rejects)
        run.latest.append(tables.transactions["timestamp"].max())
        if not (parts.doomed(spec, run.digests) or pd.isna(day)):
            result = score_tables(model, tables, day, playbook, control_fraction=0.0)
            run.scored.append(work / f"scores-{b}.parquet")
            result.scores.drop(columns=SELECTION_COLUMNS).to_parquet(run.scored[-1], index=False)
            run.unseen.append(unseen_customers(tables, result.scores["customer_id"]).to_numpy())
            if result.drift_sample is not None:
                frac = min(1.0, _DRIFT_ROWS / n / max(len(result.drift_sample), 1))
                run.samples.append(result.drift_sample.sample(frac=frac, random_state=b))
        on_partition(b + 1, n)
    return run


def _write_parts(scored: list[Path], flags: pd.DataFrame, out: Path) -> None:
    """Join the selection flags onto each scored part and stream the parts into ``out``, atomically."""
    with appending_table(out) as append:
        for part in scored:
            append(file_rows(pd.read_parquet(part).join(flags, on="customer_id"), out))
