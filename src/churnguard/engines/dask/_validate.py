"""Per-chunk and per-partition validation: numbering rows, date styles decided over the whole file, the split
by customer, and validating each customer partition with :func:`churnguard.dataset.validate_tables`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard import dataset

# _DATES is the local engine's own list of date columns: imported, not copied, so both engines stay in step.
from churnguard.dataset import _DATES, ROW_COLUMN, DataError, Tables, validate_tables
from churnguard.engines import customer_partition

if TYPE_CHECKING:
    from churnguard.config import DataConfig
    from churnguard.engines.dask._plan import _Source

# A valid row appended to every table of every partition before validation (and removed after): it keeps
# validate_tables from refusing a partition whose table is empty or has only bad rows, which are facts about
# the partition, not the file. Values are chosen to pass every check and to keep each column's dtype.
_PLACEHOLDER_ID = "__churnguard_placeholder__"
_PLACEHOLDER_DAY = pd.Timestamp("2000-01-01")
_PLACEHOLDER_NUMBERS = {"amount": 0, "quantity": 0, "discount": 0, "csat": 3, "nps": 5, "loyalty_points": 0}


def _census(frame: pd.DataFrame, date_columns: tuple[str, ...]) -> dict[str, Any]:
    """Row count and, per text date column, the chunk's :func:`churnguard.dataset.date_census`."""
    dates = {col: dataset.date_census(dataset.text_cells(frame[col]))[1] for col in date_columns
             if col in frame and not pd.api.types.is_datetime64_any_dtype(frame[col])}
    return {"rows": len(frame), "dates": dates}


def _split_chunk(frame: pd.DataFrame, first_row: int, id_column: str, n: int,
                 styles: dict[str, str]) -> tuple[list[pd.DataFrame], dict[str, dataset.DateCensus]]:
    """Number the rows, check and unify the date styles decided for the whole file, and cut the chunk into one
    piece per customer partition (row order kept).

    For each column in ``styles``, values not in that style must be no date at all (else the file mixes
    styles: counted in the returned censuses). Values of a non-ISO style are rewritten as ISO text, so every
    partition reads them alike instead of guessing a style from its own first value.
    """
    frame = frame.copy()
    frame[ROW_COLUMN] = np.arange(first_row, first_row + len(frame), dtype=np.int64)
    stats = {}
    for col, fmt in styles.items():
        if col not in frame:
            continue
        text = dataset.text_cells(frame[col])
        parsed, stats[col] = dataset.date_census(text, fmt)
        ok = parsed.notna()
        if fmt != "ISO8601":
            iso = pd.Series(pd.NA, index=text.index, dtype="string")
            iso[ok] = [t.isoformat() for t in parsed[ok]]  # the same instant, in ISO 8601
            frame[col] = text.where(~ok, iso)
    buckets = customer_partition(frame[id_column], n) if id_column in frame else np.zeros(len(frame), dtype=np.intp)
    order = np.argsort(buckets, kind="stable")
    cuts = np.searchsorted(buckets[order], np.arange(n + 1))
    ordered = frame.iloc[order]
    return [ordered.iloc[cuts[b] : cuts[b + 1]] for b in range(n)], stats


@dataclass(frozen=True)
class _Spec:
    """What each partition's validation needs to know about the whole input."""

    config: DataConfig
    sources: dict[str, str]
    files: dict[str, tuple[str, ...]]
    file_starts: dict[str, tuple[int, ...]]
    date_text: str


def _placeholder_value(name: str, dtype: Any, day_text: str) -> Any:
    """A value for the placeholder row's column ``name`` that passes validation and fits ``dtype``."""
    if name == ROW_COLUMN:
        return 0
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if name == "customer_id":
        if pd.api.types.is_integer_dtype(dtype):
            info = np.iinfo(getattr(dtype, "numpy_dtype", dtype))
            return int(info.min) if info.min < 0 else int(info.max)
        return _PLACEHOLDER_ID
    if name in _DATES:  # a date in every date column, so no partition has to guess a column's style
        if pd.api.types.is_datetime64_any_dtype(dtype):
            tz = getattr(dtype, "tz", None)
            return _PLACEHOLDER_DAY.tz_localize(tz) if tz is not None else _PLACEHOLDER_DAY
        return day_text
    if name in _PLACEHOLDER_NUMBERS:
        if numeric:
            return _PLACEHOLDER_NUMBERS[name]
        return "0" if name == "amount" else None
    if isinstance(dtype, pd.CategoricalDtype):
        return np.nan
    if pd.api.types.is_bool_dtype(dtype):
        return False
    if pd.api.types.is_integer_dtype(dtype):
        return 0
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return pd.NaT
    return None


def _placeholder(frame: pd.DataFrame, table: str, config: DataConfig, day_text: str) -> pd.DataFrame:
    inverse = {user: name for name, user in getattr(config.columns, table).items()}
    columns = {}
    for col, dtype in frame.dtypes.items():
        value = _placeholder_value(inverse.get(col, col), dtype, day_text)
        try:
            columns[col] = pd.Series([value], dtype=dtype)
        except (TypeError, ValueError):
            columns[col] = pd.Series([value])
    return pd.DataFrame(columns)


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, leaving out empty frames (they must not change dtypes); the first one if all are empty."""
    full = [f for f in frames if len(f)]
    if not full:
        return frames[0].iloc[:0]
    return full[0] if len(full) == 1 else pd.concat(full, ignore_index=True)


def _validate_partition(pieces: dict[str, list[pd.DataFrame]], spec: _Spec) -> Tables:
    """Validate one customer partition (always in reject mode: the raise/reject policy is applied globally).

    Returns the partition's tables; rejects carry the row number and file of each row and ``_order``, its
    position in the whole input.
    """
    frames, placeholder_ids = {}, {}
    for table, parts in pieces.items():
        frame = _concat(parts)
        extra = _placeholder(frame, table, spec.config, spec.date_text)
        id_column = getattr(spec.config.columns, table).get("customer_id", "customer_id")
        placeholder_ids[table] = str(extra[id_column].iloc[0]) if id_column in extra else None
        frames[table] = extra if frame.empty else pd.concat([frame.reset_index(drop=True), extra], ignore_index=True)
    config = spec.config.model_copy(update={"on_bad_rows": "reject"})
    tables = validate_tables(frames["transactions"], frames.get("tickets"), frames.get("customers"), config=config,
                             sources=spec.sources, allow_empty=True)
    rejects = tables.rejects
    if not rejects.empty and (rejects["row"] == 0).any():
        bad = rejects[rejects["row"] == 0].iloc[0]
        raise RuntimeError(f"internal placeholder row of the {bad['table']} table was rejected: column "
                           f"{bad['column']!r} {bad['reason']} ({bad['value']!r}); please report this")
    if not rejects.empty:
        rejects = rejects.copy()
        order = rejects["row"].to_numpy(dtype=np.int64)
        rejects["_order"] = order
        for table in rejects["table"].unique():
            mine = (rejects["table"] == table).to_numpy()
            starts = np.asarray(spec.file_starts[table], dtype=np.int64)
            idx = np.searchsorted(starts, order[mine], side="right") - 1
            rejects.loc[mine, "row"] = order[mine] - starts[idx] + 1
            if len(spec.files[table]) > 1:
                rejects.loc[mine, "source"] = np.asarray(spec.files[table], dtype=object)[idx]
    out = {}
    for table in ("transactions", "tickets", "customers"):
        frame = getattr(tables, table)
        if frame is not None:
            if frame.empty or str(frame["customer_id"].iloc[-1]) != placeholder_ids[table]:
                raise RuntimeError(f"internal placeholder row of the {table} table is missing; please report this")
            frame = frame.iloc[:-1]
        out[table] = frame
    return Tables(out["transactions"], out["tickets"], out["customers"], rejects)


def _partition_rejects(tables: Tables) -> pd.DataFrame:
    return tables.rejects


def _reject_digest(tables: Tables) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (table, column, reason): how many rows, and the few rows a raise-mode message quotes."""
    rej = tables.rejects
    if rej.empty:
        return pd.DataFrame(columns=["table", "column", "reason", "n"]), rej
    rej = rej.sort_values("_order", kind="stable")
    keys = ["table", "column", "reason"]
    counts = rej.groupby(keys, sort=False).size().rename("n").reset_index()
    first = rej.groupby(keys, sort=False).cumcount() < 3
    seen = ~rej.duplicated([*keys, "value"])
    first_values = seen & (seen.astype(int).groupby([rej[k] for k in keys], sort=False).cumsum() <= 3)
    return counts, rej[first | first_values]


def _rows_error(table: str, source: str, n_rows: int, counts: pd.DataFrame, samples: pd.DataFrame,
                multi_file: bool) -> DataError:
    """The DataError validate_tables would raise for ``table``, with counts over the whole input."""
    n_bad = int(counts["n"].sum())
    lines = []
    for (column, reason), group in counts.groupby(["column", "reason"]):
        rows = samples[(samples["column"] == column) & (samples["reason"] == reason)].sort_values("_order")
        examples = dataset._examples(rows["value"], 3)
        where = [f"{Path(s).name}:{r}" if multi_file else str(r) for s, r in zip(rows["source"], rows["row"], strict=True)]
        lines.append(f"  column {column!r}: {int(group['n'].sum())} row(s) {reason}, e.g. {examples} "
                     f"(rows {', '.join(where[:3])})")
    hint = ("no usable rows remain" if n_bad == n_rows
            else "fix the file, or set data.on_bad_rows: reject to set these rows aside in a rejects report")
    return DataError(f"{source}: {n_bad} of {n_rows} {table} row(s) cannot be used:\n" + "\n".join(lines) + f"\n{hint}")


def _date_styles(src: _Source, chunks: list[dict], config: DataConfig) -> dict[str, str]:
    """Each text date column's style, decided by :func:`churnguard.dataset.date_style` on the census of the
    whole file (the chunks' censuses merged in file order); columns with nothing to decide are left out."""
    if config.date_format is not None:
        return {}
    inverse = {u: c for c, u in getattr(config.columns, src.table).items()}
    formats = {}
    for col in src.columns:
        name = inverse.get(col, col)
        parts = [c["dates"][col] for c in chunks if col in c["dates"]]
        census = reduce(dataset.merge_census, parts, dataset.DateCensus())
        fmt = dataset.date_style(census, src.name, name) if name in _DATES else None
        if fmt is not None:
            formats[col] = fmt
    return formats


def _placeholder_date(config: DataConfig) -> str:
    if config.date_format is None:
        return _PLACEHOLDER_DAY.strftime("%Y-%m-%d")
    text = _PLACEHOLDER_DAY.tz_localize("UTC").strftime(config.date_format)
    if pd.isna(pd.to_datetime(text, format=config.date_format, errors="coerce", utc=True)):
        raise DataError(f"data.date_format {config.date_format!r} cannot be read back from the dates it writes "
                        f"({text!r}); the dask engine needs a format that round-trips")
    return text
