"""Batch scoring and features of files larger than memory comfortably allows, partitioned by customer.

The steps of :mod:`churnguard.engines.partitions`, in this process: the files are read in chunks, once (each
chunk's census and its split by customer in one pass, the next chunk read meanwhile), the pieces spilled to
uncompressed Arrow IPC files in a work directory beside the output (:func:`churnguard._io.files.work_dir`: removed when
the run ends, or by the next run there when this one was killed), and the buckets validated and scored
:data:`BUCKETS_AT_ONCE` at a time, on threads of their own (memory: about that many partitions' share of the
data). Population quantities (lifespan, VIP threshold, BG/NBD parameters) come from the model, so the scores do
not depend on the partitioning; the selection is drawn over all customers and the output written atomically.

Features (:func:`features_files`) learn the population from the data, over all buckets, as the Dask engine
does: each bucket is validated once and, while its tables are in hand, everything of its features that needs
no state of the whole population is computed (``features.build.Partial``) and kept in the work directory,
with its lifespan counts, attribute summaries and the inputs of its CLTV; the population's lifespan,
attribute kinds and VIP cut-off are learned from those; then each bucket's features are finished with them
(``features.build.finish_features``) and spilled, and the buckets' features are merged in customer order into
the output, a block of rows at a time.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard._io.cores import LARGEST_HEAP_BLOCK, arrow_from_malloc, cores_shared, usable_cores
from churnguard._io.files import work_dir
from churnguard._io.write import appending_table
from churnguard._text import plural
from churnguard.dataset import last_day
from churnguard.engines import partitions as parts
from churnguard.features import to_day
from churnguard.scoring import ScoreResult, score_tables, select_customers
from churnguard.scoring.score import LIGHT_COLUMNS, SELECTION_COLUMNS, drift_rows, file_rows, unseen_customers
from churnguard.sources import DbSource

if TYPE_CHECKING:
    import pyarrow as pa

    from churnguard.config import DataConfig, FeatureConfig, Playbook
    from churnguard.dataset import Tables
    from churnguard.model import ChurnModel
    from churnguard.population import Population

__all__ = ["FEATURES_ROWS_PER_PARTITION", "SCORE_ROWS_PER_PARTITION", "FeaturesResult", "auto_partitions",
           "features_files", "input_partitions", "score_files"]

logger = logging.getLogger(__name__)

_BYTES_PER_PARTITION = 256 * 1024 * 1024
# Buckets validated and built (features) or scored at once, each on a thread of its own (two; one on one core):
# numpy, Arrow and pandas let go of the GIL in their loops, so the second core works on the other bucket, and a
# bucket's own threads (score's TreeSHAP walk) spread over its share of the cores (_io.cores.cores_shared). At 1M
# customers from Parquet, features (4 partitions) took 1.2-2.4 s less wall time with two than with one, at 0.4-0.5
# GB more peak RSS; score (6 partitions of half the rows, each walk on one thread) 3.1-4.8 s less than 3 partitions
# one at a time, each walk on two, at as much memory (benchmarks/HISTORY.md, twenty-third day).
BUCKETS_AT_ONCE = min(2, usable_cores())
# The input rows (all tables) one partition holds, by job (auto_partitions).
# score: bounded by memory, which grows with the input rows of the partitions in hand: scoring 1M customers from
# Parquet took 230-270 bytes per input row of a partition at its peak, above the ~0.3 GB the process holds before
# the first one (benchmarks/HISTORY.md, "`churnguard score` at 1M customers within 2 GB"): 5.5M rows, about 1.4 GB,
# shared by the partitions scored at once.
SCORE_ROWS_PER_PARTITION = 5_500_000 // BUCKETS_AT_ONCE
# features: a column of 8-byte values over a partition's rows (timestamps, amounts, row numbers, the sorts'
# indices) stays within malloc's largest heap block (_io.cores.LARGEST_HEAP_BLOCK, 32 MB: 4.2M rows), so each
# partition's arrays reuse the heap the previous one freed instead of being fresh mappings that the kernel faults
# in and clears. At 1M customers from Parquet (15.6M rows): 3 partitions took 198-284 thousand minor page faults
# (0.57 GiB of mappings over 32 MiB), 4 to 8 partitions 107-136 thousand; 4 took 0.3 s less CPU than 3 and 800-820
# MB of peak RSS against 960-1,000 MB; more than 4 no less CPU, only less memory (benchmarks/HISTORY.md,
# twenty-first day).
FEATURES_ROWS_PER_PARTITION = LARGEST_HEAP_BLOCK // 8


@dataclass(frozen=True)
class FeaturesResult:
    """What a features run wrote: the features file ``out`` (``rows`` customers, one row each, ``columns``
    feature columns besides ``customer_id`` and ``as_of``), the input rows set aside and, as ``score`` reports
    them, the customers known to the tables but left out (no activity on or before as_of: rows of table ``all``
    in ``rejects``, ``churnguard.scoring.score.unscored_rejects``)."""

    rejects: pd.DataFrame
    out: Path
    rows: int
    columns: int
    left_out: int = 0
    emptied: int = 0  # customers whose every row was set aside (``churnguard.scoring.score.emptied_customers``)

    def summary(self) -> str:
        text = f"features: {plural(self.rows, 'customer')} x {plural(self.columns, 'feature')} -> {self.out}"
        if self.left_out:
            text += f"; {plural(self.left_out, 'customer')} left out: no activity on or before as_of (see the rejects)"
        if self.emptied:
            text += (f"; {plural(self.emptied, 'customer')} with every row set aside, so without features (see the "
                     "rejects)")
        return text


def auto_partitions(paths: list[Path], rows: int = 0, *, rows_per_partition: int) -> int:
    """One partition per ~256 MB of input files and per ``rows_per_partition`` input ``rows`` (all tables),
    whichever gives more. The job says how many rows its partition holds: :data:`SCORE_ROWS_PER_PARTITION` (by
    memory) or :data:`FEATURES_ROWS_PER_PARTITION` (by malloc's heap)."""
    size = sum(p.stat().st_size for p in paths)
    return max(1, int(np.ceil(size / _BYTES_PER_PARTITION)), int(np.ceil(rows / rows_per_partition)))


def input_partitions(paths: list[Path], *, rows_per_partition: int) -> int:
    """:func:`auto_partitions` of input files or Parquet dataset directories, judged before any row is read:
    the rows a Parquet file's metadata records (a CSV file counts by its size only). ``features`` builds in
    memory when this is 1 (with :data:`FEATURES_ROWS_PER_PARTITION`), else by partition."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from churnguard._io.read import input_format

    files, rows = [], 0
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith((".", "_")))
        elif path.is_file():
            found = [path]
        else:
            continue  # not found: the read says so, with the table's name
        for f in found:
            files.append(f)
            try:
                if path.is_dir() or input_format(f) == "parquet":
                    rows += pq.ParquetFile(f).metadata.num_rows
            except (OSError, ValueError, pa.ArrowException):
                continue  # not a readable Parquet file: the read itself says what is wrong with it
    return auto_partitions(files, rows, rows_per_partition=rows_per_partition)


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
    from concurrent.futures import ThreadPoolExecutor

    from churnguard.scoring.score import unscored_rejects

    sources, files = _plan({"transactions": transactions, "tickets": tickets, "customers": customers,
                            "events": events}, data_config, partitions)
    with work_dir(Path(out).parent) as work:
        spec, day, n = _census_and_split(sources, data_config, partitions, SCORE_ROWS_PER_PARTITION, files, work,
                                         as_of)
        run = _score_buckets(model, spec, n, work, day, playbook, on_partition)
        found = last_day(pd.Series(run.latest, dtype="datetime64[ns]"))
        if as_of is None and found != day and not parts.doomed(spec, run.digests):  # another style, or set aside
            day, run = found, _score_buckets(model, spec, n, work, found, playbook, on_partition)
        rejects = parts.merge_rejects(spec, run.rejects, parts.bad_rows(spec, run.digests))
        light = pd.concat([pd.read_feather(p, columns=LIGHT_COLUMNS) for p in run.scored], ignore_index=True)
        light = select_customers(light, budget=budget, control_fraction=control_fraction, seed=seed)
        with ThreadPoolExecutor(1, thread_name_prefix="churnguard-drift") as pool:
            drifted = pool.submit(run.drift_sample)  # read back while the scores are written
            _write_parts(run.scored, light[["customer_id", *SELECTION_COLUMNS]], Path(out))
            sample = drifted.result()
    rejects = unscored_rejects(rejects, pd.Index(np.concatenate(run.unseen)), day)
    return ScoreResult(light, rejects, sample, day)


def _plan(paths: dict[str, Path | DbSource | None], data_config: DataConfig, partitions: int | None
          ) -> tuple[dict[str, parts.Source], list[Path]]:
    """The inputs' chunks (the feature columns only; a database table in ``partitions`` chunks) and the input
    files (for :func:`auto_partitions`)."""
    sources = parts.plan_inputs(paths, data_config, feature_inputs_only=True, db_parts=partitions or 1)
    return sources, [Path(p) for p in paths.values() if p is not None and not isinstance(p, DbSource)]


def _census_and_split(sources: dict[str, parts.Source], data_config: DataConfig, partitions: int | None,
                      rows_per_partition: int, files: list[Path], work: Path, as_of: str | pd.Timestamp | None
                      ) -> tuple[parts.Spec, pd.Timestamp, int]:
    """The census of every chunk, what it decides, the split into ``partitions`` buckets in ``work`` (default:
    :func:`auto_partitions` of the files and the rows the census counted, at the job's ``rows_per_partition``);
    the spec, the day to start from and the number of buckets. The day is ``as_of``, else a first guess at
    "today": the last day of the transactions as the census read them, before validation (the caller confirms it
    on the validated timestamps).

    Each chunk is read once: its census is taken and its rows split in one pass (:func:`_census_split`), into
    the buckets the files ask for before a row is read (:func:`input_partitions`: their sizes and the rows a
    Parquet file's metadata records, which the census counts alike). When the rows the census counted ask for
    another number (text files, whose rows only the census counts), the chunks are read and split again into
    those; the text date columns of a decided style are read again for the census in that style
    (:func:`churnguard.engines.partitions.check_styles`)."""
    n = partitions or input_partitions(files, rows_per_partition=rows_per_partition)
    census = _census_split(sources, data_config, n, work)
    spec = parts.decide(sources, census, data_config)
    wanted = partitions or auto_partitions(files, sum(spec.rows.values()), rows_per_partition=rows_per_partition)
    if wanted != n:
        for piece in work.glob("*.arrow"):
            piece.unlink()
        n = wanted
        _split(spec, n, work)
    elif any(spec.styles.values()):
        parts.check_styles(spec, {t: [parts.style_census(parts.read_chunk(c, parts.census_columns(s, data_config)),
                                                         spec, t) for c in s.chunks]
                                  for t, s in spec.sources.items() if spec.styles.get(t)})
    _release()
    latest = pd.Series([c.last for c in census["transactions"]], dtype="datetime64[ns]")
    return spec, to_day(as_of) if as_of is not None else last_day(latest), n


def _census_split(sources: dict[str, parts.Source], config: DataConfig, n: int, work: Path
                  ) -> dict[str, list[parts.ChunkCensus]]:
    """Read every chunk once: its census, and its rows split into ``n`` buckets spilled as :func:`_split`
    spills them."""
    census = {}
    for t, src in sources.items():
        census[t], parsed = [], None  # the date columns every chunk so far holds parsed
        for i, table in enumerate(_read_ahead(src)):
            first = 1 + sum(c.rows for c in census[t])
            found, pieces = parts.census_and_split(table, src, config, first, n, parsed)
            del table
            census[t].append(found)
            _spill(pieces, work, t, i)
            del pieces
            if parsed is not None and set(found.parsed) != set(parsed):  # this chunk's hold fewer: split again
                for j, earlier in enumerate(src.chunks[:i]):
                    _, pieces = parts.census_and_split(parts.read_chunk(earlier, src.columns), src, config,
                                                       1 + sum(c.rows for c in census[t][:j]), n, found.parsed)
                    _spill(pieces, work, t, j)
                    del pieces
            parsed = found.parsed
    return census


def _read_ahead(source: parts.Source) -> Iterator[pa.Table]:
    """The chunks of ``source`` read (its columns), each next one read on a thread of its own while the caller
    works on the one before."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="churnguard-read-ahead") as pool:
        ahead = None
        for chunk in source.chunks:
            nxt = pool.submit(parts.read_chunk, chunk, source.columns)
            if ahead is not None:
                yield ahead.result()
            ahead = nxt
        if ahead is not None:
            yield ahead.result()


def _release() -> None:
    """Hand the memory Arrow's allocator keeps for reuse back to the system: after the split or a bucket, most
    of it would otherwise stay resident (0.5 GB after splitting 27M events). Not when Arrow allocates from
    glibc's ``malloc`` (its system pool), as ``features_files`` has it do once the input is split
    (``_io.cores.arrow_from_malloc``): what a bucket frees is then kept for the next bucket's arrays
    (``_io.cores.keep_freed_memory``), not handed back (``malloc_trim``) and faulted in again. Measured at 1M
    customers (benchmarks/HISTORY.md, twelfth day): 0.5-1 s less CPU on average, 5-10% of ``features`` from CSV
    or Parquet, no more peak RSS. (From the start, for the split too: more page faults in the split and 50-200
    MB more peak RSS; ``score``, whose buckets hold more at once, took more CPU and 0.2 GB more with it.)"""
    import pyarrow as pa

    pool = pa.default_memory_pool()
    if pool.backend_name != "system":
        pool.release_unused()


def _split(spec: parts.Spec, n: int, work: Path) -> None:
    """Split every chunk into ``n`` buckets, spilled to ``{table}-{bucket}-{chunk}.arrow`` in ``work``
    (:func:`_spill`), and check the date styles."""
    stats = {t: [] for t in spec.sources}
    for t, src in spec.sources.items():
        for i, chunk in enumerate(src.chunks):
            pieces, stats_i = parts.split_chunk(parts.read_chunk(chunk, src.columns), spec, t, i, n)
            stats[t].append(stats_i)
            _spill(pieces, work, t, i)
    parts.check_styles(spec, stats)


def _spill(pieces: list[pa.Table], work: Path, table: str, i: int) -> None:
    """Write chunk ``i``'s pieces of ``table`` to ``{table}-{bucket}-{i}.arrow`` in ``work`` (empty pieces only
    of the first chunk, for the columns)."""
    import pyarrow as pa

    for b, piece in enumerate(pieces):
        if len(piece) or i == 0:
            with pa.ipc.new_file(str(work / f"{table}-{b}-{i}.arrow"), piece.schema) as writer:
                writer.write_table(piece)


def _bucket(spec: parts.Spec, work: Path, b: int) -> dict[str, list[pa.Table]]:
    """The pieces of bucket ``b``, in file order, memory-mapped: no copy is made of the file's pages (the mapping
    is let go with the piece's last buffer, once validation has turned it into a frame). Read into memory instead,
    a partition of the 1M customers' 136.4M events (28 partitions) took about 0.05 s more of CPU, in the kernel."""
    import pyarrow as pa

    return {t: [pa.ipc.open_file(pa.memory_map(str(p))).read_all() for p in ps if p.exists()]
            for t, ps in _piece_paths(spec, work, b).items()}


def _piece_paths(spec: parts.Spec, work: Path, b: int) -> dict[str, list[Path]]:
    """Where :func:`_split` writes the pieces of bucket ``b``, per table (an empty piece is not written)."""
    return {t: [work / f"{t}-{b}-{i}.arrow" for i in range(len(s.chunks))] for t, s in spec.sources.items()}


@dataclass
class _Run:
    """What scoring the buckets left: each bucket's scores file, unscored ids, validation rejects and their
    digest, its last transaction time and its drift sample (Arrow IPC files in the work directory)."""

    scored: list[Path] = field(default_factory=list)
    unseen: list[np.ndarray] = field(default_factory=list)
    rejects: list[pd.DataFrame] = field(default_factory=list)
    digests: list = field(default_factory=list)
    latest: list[pd.Timestamp] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)

    def drift_sample(self) -> pd.DataFrame | None:
        """The drift sample of all buckets (:func:`_merged_samples`), None when no bucket had one."""
        return _merged_samples(self.samples) if self.samples else None


def _score_buckets(model: ChurnModel, spec: parts.Spec, n: int, work: Path, day: pd.Timestamp, playbook: Playbook,
                   on_partition: Callable[[int, int], None]) -> _Run:
    """Validate and score the buckets, :data:`BUCKETS_AT_ONCE` at a time; once the bad-row policy is sure to
    raise (or there is no day to score as of), the buckets not yet begun are only validated."""
    digests: list[parts.Digest] = []  # as the buckets finish validating, in any order

    def score(b: int) -> _Scored:
        return _score_bucket(model, spec, work, b, day, playbook, digests)

    run = _Run()
    for b, scored in enumerate(_each_bucket(score, n)):
        _add_validated(run, scored.validated)
        if scored.scores is not None:
            run.scored.append(scored.scores)
            run.unseen.append(scored.unseen)
        if scored.sample is not None:
            run.samples.append(scored.sample)
        on_partition(b + 1, n)
    return run


@dataclass(frozen=True)
class _Validated:
    """What validating a bucket found: its reject digest, rejects and last transaction time."""

    digest: parts.Digest
    rejects: pd.DataFrame
    latest: pd.Timestamp


def _validated_bucket(spec: parts.Spec, work: Path, b: int, digests: list[parts.Digest], *, consume: bool = False
                      ) -> tuple[Tables, _Validated, bool]:
    """Bucket ``b``'s validated tables, what validation found and whether the bad-row policy is sure to raise
    over its digest and the ``digests`` of the buckets validated so far (this one's is added to them)."""
    tables = parts.validate_partition(_bucket(spec, work, b), spec, coded_ids=True, consume=consume)
    found = _Validated(parts.reject_digest(tables), tables.rejects, tables.transactions["timestamp"].max())
    digests.append(found.digest)
    return tables, found, parts.doomed(spec, digests)


def _add_validated(run: _Run | _Checked, found: _Validated) -> None:
    """Add what validating a bucket found to a run's lists."""
    run.digests.append(found.digest)
    run.rejects.append(found.rejects)
    run.latest.append(found.latest)


@dataclass(frozen=True)
class _Scored:
    """One bucket validated and, unless the bad-row policy was sure to raise, scored: its scores file, unscored
    ids and drift sample file (Arrow IPC, in the work directory; None without a sample)."""

    validated: _Validated
    scores: Path | None = None
    unseen: np.ndarray | None = None
    sample: Path | None = None


def _score_bucket(model: ChurnModel, spec: parts.Spec, work: Path, b: int, day: pd.Timestamp, playbook: Playbook,
                  digests: list[parts.Digest]) -> _Scored:
    """Validate bucket ``b`` and, unless the policy is sure to raise (:func:`_validated_bucket`), score it
    (:func:`_score_buckets`)."""
    tables, validated, doomed = _validated_bucket(spec, work, b, digests)
    found = _Scored(validated)
    if doomed or pd.isna(day):
        return found
    result = score_tables(model, tables, day, playbook, select=False)  # selected over all buckets
    del tables  # before the scores are written
    scores = work / f"scores-{b}.arrow"  # Arrow's IPC file: no encoding, read back as written
    result.scores.to_feather(scores, compression="uncompressed")
    sample = None
    if result.drift_sample is not None:  # kept in ``work``: held in memory, it would add to the peak
        sample = work / f"drift-{b}.arrow"
        result.drift_sample.to_feather(sample, compression="uncompressed")  # numbers: as cheap
    # unseen: found once, by score_tables for its rejects
    found = replace(found, scores=scores, unseen=result.unseen.to_numpy(), sample=sample)
    del result
    _release()
    return found


def _merged_samples(paths: list[Path]) -> pd.DataFrame:
    """The drift sample of all buckets from each bucket's (``paths``, in bucket order): the :func:`drift_rows` of
    their customers, at most ``DRIFT_LIMIT`` rows, in the order the buckets hold them. Each bucket's sample is
    written once and read back once, after the last bucket: only its ids first, to draw the sample, then its
    rows, one bucket at a time."""
    ids = [pd.read_feather(p, columns=["customer_id"])["customer_id"].to_numpy(dtype=object) for p in paths]
    keep = drift_rows(np.concatenate(ids))
    cuts = np.cumsum([0, *map(len, ids)])
    kept = [pd.read_feather(p).loc[keep[a:b]] for p, a, b, i in zip(paths, cuts[:-1], cuts[1:], ids, strict=True)
            if len(i)]  # an empty file has lost its categories' levels, which would turn those columns into objects
    return pd.concat(kept, ignore_index=True) if kept else pd.read_feather(paths[-1])


def _write_parts(scored: list[Path], flags: pd.DataFrame, out: Path) -> None:
    """Add the selection flags to each scored part and stream the parts into ``out``, atomically. ``flags``
    holds the parts' rows in the same order (read from them, one after another): a part's flags are the next
    rows, taken by position (its ids are checked against them), not joined by id."""
    with appending_table(out) as append:
        start = 0
        for part in scored:
            frame = pd.read_feather(part)
            mine = flags.iloc[start : start + len(frame)].reset_index(drop=True)
            start += len(frame)
            if not frame["customer_id"].equals(mine["customer_id"]):
                raise RuntimeError(f"{part}: the selection's rows are not this part's rows")
            append(file_rows(pd.concat([frame, mine.drop(columns="customer_id")], axis=1), out))


_MERGE_ROWS = 1 << 16  # feature rows written to the output at a time (a row group of the Parquet file): the
# merge of 262,144-row blocks set the peak RSS of the build at 1M customers with the events (1,580 MB)
_PART_BATCH_ROWS = 1 << 14  # rows of a record batch of a bucket's features file


def features_files(
    *,
    transactions: Path,
    tickets: Path | None,
    customers: Path | None,
    out: Path,
    data_config: DataConfig,
    feature_config: FeatureConfig,
    events: Path | None = None,
    as_of: str | pd.Timestamp | None = None,
    partitions: int | None = None,
    on_step: Callable[..., None] = lambda *_args, **_kwargs: None,
) -> FeaturesResult:
    """Point-in-time features of the customers in the files, written to ``out`` atomically: the rows, the
    ``attrs`` and the rejects of ``build_features`` on ``load_tables(..., feature_inputs_only=True)`` (see the
    module docstring), holding about :data:`BUCKETS_AT_ONCE`/``partitions`` of the data at a time (default:
    :func:`auto_partitions` at :data:`FEATURES_ROWS_PER_PARTITION`).
    ``as_of``: the cut-off day (default: the last day with a transaction, as validation reads the timestamps).
    ``on_step(description, done, total)`` is called per bucket.

    Raises:
        DataError: as ``load_tables``, with counts and row numbers over whole files.
    """
    from churnguard.dataset import today
    from churnguard.scoring.score import emptied_customers, unscored_rejects

    sources, files = _plan({"transactions": transactions, "tickets": tickets, "customers": customers,
                            "events": events}, data_config, partitions)
    with work_dir(Path(out).parent) as work:
        spec, guess, n = _census_and_split(sources, data_config, partitions, FEATURES_ROWS_PER_PARTITION, files,
                                           work, as_of)
        with arrow_from_malloc():  # once the input is split: see _release
            checked = _validate_buckets(spec, n, work, guess, feature_config, on_step, keep_pieces=as_of is None)
            day = guess if as_of is not None else today(pd.Series(checked.latest, dtype="datetime64[ns]"))
            if day != guess:  # dates in another style than the census read, or the last ones set aside
                checked = _validate_buckets(spec, n, work, day, feature_config, on_step)
            rejects = parts.merge_rejects(spec, checked.rejects, parts.bad_rows(spec, checked.digests))
            population = parts.learned_population(checked.inputs, feature_config)
            built = _finish_buckets(checked.partials, feature_config, population, work, on_step)
            columns = _merge_parts(built, population, Path(out), on_step)
    unseen = pd.Index(np.concatenate(checked.unseen)) if checked.unseen else pd.Index([], dtype=object)
    return FeaturesResult(unscored_rejects(rejects, unseen, day), Path(out), sum(len(i) for i in built.ids), columns,
                          len(unseen), emptied_customers(rejects, [*built.ids, unseen]))


@dataclass(frozen=True)
class _Checked:
    """What validating the buckets left: each bucket's partial features as of the day (``features.build.Partial``,
    a pickle in the work directory), its ``partitions.PopulationInputs`` and the customers known to its tables
    without a features row; its rejects, reject digest and last transaction time."""

    inputs: list[parts.PopulationInputs] = field(default_factory=list)
    partials: list[Path] = field(default_factory=list)
    unseen: list[np.ndarray] = field(default_factory=list)
    rejects: list[pd.DataFrame] = field(default_factory=list)
    digests: list = field(default_factory=list)
    latest: list[pd.Timestamp] = field(default_factory=list)


def _validate_buckets(spec: parts.Spec, n: int, work: Path, day: pd.Timestamp, cfg: FeatureConfig,
                      on_step: Callable[..., None], keep_pieces: bool = False) -> _Checked:
    """Validate the buckets, :data:`BUCKETS_AT_ONCE` at a time, and keep each one's partial features as of ``day``
    in ``work`` (everything that needs no state of the whole population: most of the build, so a bucket's tables
    are let go at once); once the bad-row policy is sure to raise (or there is no day), the buckets not yet begun
    are only validated, for the counts of the error. ``keep_pieces``: leave the split's pieces in ``work``, to
    validate them again as of another day."""
    digests: list[parts.Digest] = []  # as the buckets finish validating, in any order

    def check(b: int) -> _BucketCheck:
        return _check_bucket(spec, work, b, day, cfg, keep_pieces, digests)

    run = _Checked()
    on_step(f"validating and building partitions, 0/{n} done", 0, n)
    for b, checked in enumerate(_each_bucket(check, n)):
        on_step(f"validating and building partitions, {b + 1}/{n} done", b + 1, n)
        _add_validated(run, checked.validated)
        if checked.partial is not None:
            run.inputs.append(checked.inputs)
            run.unseen.append(checked.unseen)
            run.partials.append(checked.partial)
    if parts.doomed(spec, run.digests):  # a bucket finished before the first bad one was found
        for path in run.partials:
            path.unlink()
        run = _Checked(digests=run.digests, rejects=run.rejects, latest=run.latest)
    return run


@dataclass(frozen=True)
class _BucketCheck:
    """One bucket validated and, unless the bad-row policy was sure to raise, its partial features' file in the
    work directory, population inputs and the customers known to its tables without a features row."""

    validated: _Validated
    partial: Path | None = None
    inputs: parts.PopulationInputs | None = None
    unseen: np.ndarray | None = None


def _check_bucket(spec: parts.Spec, work: Path, b: int, day: pd.Timestamp, cfg: FeatureConfig, keep_pieces: bool,
                  digests: list[parts.Digest]) -> _BucketCheck:
    """Validate bucket ``b`` and, unless the policy is sure to raise (:func:`_validated_bucket`), keep its partial
    features (:func:`_validate_buckets`)."""
    from churnguard.features.build import partial_features

    tables, validated, doomed = _validated_bucket(spec, work, b, digests, consume=True)
    if not keep_pieces:
        for path in itertools.chain.from_iterable(_piece_paths(spec, work, b).values()):
            path.unlink(missing_ok=True)
    found = _BucketCheck(validated)
    if doomed or pd.isna(day):
        return found
    _release()  # what validation let go, before the features take theirs
    partial = partial_features(tables, day, cfg, count_lifespan=True)
    unseen = unseen_customers(tables, partial.customers.to_series()).to_numpy()
    del tables
    path = _pickled(partial, work / f"partial-{b}.pickle")
    found = replace(found, partial=path, inputs=parts.population_inputs(partial, cfg), unseen=unseen)
    del partial
    _release()
    return found


def _each_bucket(job: Callable[[int], Any], n: int) -> Iterator[Any]:
    """``job(b)`` of each bucket ``b`` of ``n``, in bucket order, :data:`BUCKETS_AT_ONCE` at a time on threads of
    their own, each with its share of the cores (``_io.cores.cores_shared``). When the caller stops early (an error, a signal), buckets not yet begun are dropped and the ones
    at work finish before this returns, so that none writes to a work directory being removed."""
    from concurrent.futures import ThreadPoolExecutor

    ways = min(BUCKETS_AT_ONCE, max(n, 1))
    pool = ThreadPoolExecutor(ways, thread_name_prefix="churnguard-bucket")
    try:
        yield from pool.map(cores_shared(job, ways), range(n))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pickled(value: Any, path: Path) -> Path:
    """Keep ``value`` in the work file ``path`` (pickled: frames come back as they were, dtypes and all; not
    compressed: a bucket's partial features are mostly floats, which LZ4 shrank to 40% at three times the CPU)."""
    import pickle

    with path.open("wb") as fh:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _unpickled(path: Path) -> Any:
    """A value :func:`_pickled` kept."""
    import pickle

    with path.open("rb") as fh:
        return pickle.load(fh)  # this run's own work file


@dataclass(frozen=True)
class _Built:
    """Each bucket's features file (Arrow IPC, rows sorted by customer id) and customer ids."""

    parts: list[Path] = field(default_factory=list)
    ids: list[pd.Series] = field(default_factory=list)


def _finish_buckets(partials: list[Path], cfg: FeatureConfig, population: Population, work: Path,
                    on_step: Callable[..., None]) -> _Built:
    """Finish each bucket's features with the population's state (lifespan, VIP cut-off, attribute kinds) and
    spill them to ``work`` (Arrow IPC, without the frame's ``attrs``: the merge writes them), as many buckets at
    once as :func:`_validate_buckets` builds."""

    def finish(b: int) -> tuple[Path, pd.Series]:
        return _finish_bucket(partials[b], cfg, population, work / f"features-{b}.arrow")

    run = _Built()
    n = len(partials)
    on_step(f"finishing features, 0/{n} partitions done", 0, n)
    for b, (path, ids) in enumerate(_each_bucket(finish, n)):
        on_step(f"finishing features, {b + 1}/{n} partitions done", b + 1, n)
        run.parts.append(path)
        run.ids.append(ids)
    return run


def _finish_bucket(partial_path: Path, cfg: FeatureConfig, population: Population, out: Path
                   ) -> tuple[Path, pd.Series]:
    """Finish the partial features kept in ``partial_path`` and spill them to ``out``; ``out`` and the ids."""
    import pyarrow as pa

    from churnguard.features.build import finish_features

    partial = _unpickled(partial_path)
    partial_path.unlink()
    feats = finish_features(partial, cfg, population)
    del partial
    table = pa.Table.from_pandas(feats, preserve_index=False)
    with pa.ipc.new_file(str(out), table.schema) as writer:
        writer.write_table(table, max_chunksize=_PART_BATCH_ROWS)
    ids = feats["customer_id"]
    del feats, table
    _release()
    return out, ids


class _Cursor:
    """A bucket's features file read forward, a record batch at a time (read, not memory-mapped: the rows
    written are let go)."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa

        self._reader = pa.ipc.open_file(pa.OSFile(str(path)))
        self._next, self._held = 0, None

    def take(self, k: int) -> list[pa.Table]:
        """The next ``k`` rows, as slices of the batches that hold them."""
        import pyarrow as pa

        pieces = []
        while k > 0:
            if self._held is None or not len(self._held):
                self._held = pa.Table.from_batches([self._reader.get_batch(self._next)])
                self._next += 1
            piece = self._held.slice(0, k)
            self._held, k = self._held.slice(len(piece)), k - len(piece)
            pieces.append(piece)
        return pieces


def _merge_parts(built: _Built, population: Population, out: Path, on_step: Callable[..., None]) -> int:
    """Stream the buckets' features into ``out`` in customer order (the order ``build_features`` gives all of
    them: each bucket's rows are sorted, so a block of the output takes the next rows of each), as Arrow
    tables, with the ``attrs`` of ``build_features``; the number of feature columns."""
    import pyarrow as pa

    ids = pd.concat(built.ids, ignore_index=True) if built.ids else pd.Series([], dtype=object)
    order = ids.sort_values(kind="stable").index.to_numpy()
    bucket = np.repeat(np.arange(len(built.ids)), [len(i) for i in built.ids])[order]
    del ids, order
    attrs = {"population": population.to_dict(), "lifespan_years": population.lifespan_years}
    cursors = [_Cursor(p) for p in built.parts]
    columns = 0
    on_step("writing the features")
    with appending_table(out) as append:
        for start in range(0, max(len(bucket), 1), _MERGE_ROWS):
            mine = bucket[start : start + _MERGE_ROWS]
            counts = np.bincount(mine, minlength=len(cursors))
            pieces = [piece for c, k in zip(cursors, counts, strict=True) for piece in c.take(int(k))]
            if pieces:
                table = pa.concat_tables(pieces).take(_inverse(np.argsort(mine, kind="stable")))
            else:  # no customer known at as_of: the columns of the first bucket's (empty) features
                table = pa.ipc.open_file(str(built.parts[0])).schema.empty_table()
            # the file's attrs come from its first block (later blocks' would only be copied)
            append(table, attrs if start == 0 else None)
            columns = table.num_columns - 2
    return columns


def _inverse(order: np.ndarray) -> np.ndarray:
    """The permutation that undoes ``order`` (``np.argsort(order)``, without the second sort)."""
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order), dtype=order.dtype)
    return inverse
