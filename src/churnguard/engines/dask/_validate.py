"""Per-chunk and per-partition validation: numbering rows, date styles decided over the whole file, the split
by customer, and validating each customer partition with :func:`churnguard.dataset.validate_tables`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

# _DATES is the local engine's own list of date columns: imported, not copied, so both engines stay in step.
from churnguard.dataset import _DATES, CONTRACT, ROW_COLUMN, DataError, Tables, validate_tables
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


def _date_text(raw: pd.Series) -> pd.Series:
    """Date cells as validate_tables sees them before parsing: stripped text, blanks missing."""
    text = raw.astype("string").str.strip()
    return text.mask(text == "")


def _first_unique(values: pd.Series, n: int) -> list[str]:
    return [str(v) for v in values.dropna().astype(str).unique()[:n]]


def _census(frame: pd.DataFrame, date_columns: tuple[str, ...]) -> dict[str, Any]:
    """Row count and, per text date column, what decides its date style over the whole file."""
    dates = {}
    for col in date_columns:
        if col not in frame or pd.api.types.is_datetime64_any_dtype(frame[col]):
            continue
        present = _date_text(frame[col]).dropna()
        if present.empty:
            continue
        iso = pd.to_datetime(present, format="ISO8601", errors="coerce", utc=True)
        dates[col] = {"present": len(present), "iso": int(iso.notna().sum()), "first": str(present.iloc[0])}
    return {"rows": len(frame), "dates": dates}


def _split_chunk(frame: pd.DataFrame, first_row: int, id_column: str, n: int,
                 styles: dict[str, str]) -> tuple[list[pd.DataFrame], dict[str, dict]]:
    """Number the rows, check and unify the date styles decided for the whole file, and cut the chunk into one
    piece per customer partition (row order kept).

    For each column in ``styles``, values not in that style must be no date at all (else the file mixes
    styles: counted in the returned stats). Values of a non-ISO style are rewritten as ISO text, so every
    partition reads them alike instead of guessing a style from its own first value.
    """
    frame = frame.copy()
    frame[ROW_COLUMN] = np.arange(first_row, first_row + len(frame), dtype=np.int64)
    stats = {}
    for col, fmt in styles.items():
        if col not in frame:
            continue
        text = _date_text(frame[col])
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        ok = parsed.notna()
        failed = text[text.notna() & ~ok]
        other = pd.to_datetime(failed, format="mixed", errors="coerce", utc=True)
        stats[col] = {"present": int(text.notna().sum()), "mixed": int(other.notna().sum()),
                      "ok": _first_unique(text[ok], 2), "bad": _first_unique(failed[other.notna()], 3)}
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


def _placeholder_value(name: str, dtype: Any, date_text: str) -> Any:
    """A value for the placeholder row's column ``name`` that passes validation and fits ``dtype``."""
    if name == ROW_COLUMN:
        return 0
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if name == "customer_id":
        if pd.api.types.is_integer_dtype(dtype):
            info = np.iinfo(getattr(dtype, "numpy_dtype", dtype))
            return int(info.min) if info.min < 0 else int(info.max)
        return _PLACEHOLDER_ID
    if name in ("timestamp", "opened_at"):
        if pd.api.types.is_datetime64_any_dtype(dtype):
            tz = getattr(dtype, "tz", None)
            return _PLACEHOLDER_DAY.tz_localize(tz) if tz is not None else _PLACEHOLDER_DAY
        return date_text
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


def _placeholder(frame: pd.DataFrame, table: str, config: DataConfig, date_text: str) -> pd.DataFrame:
    inverse = {user: name for name, user in getattr(config.columns, table).items()}
    columns = {}
    for col, dtype in frame.dtypes.items():
        value = _placeholder_value(inverse.get(col, col), dtype, date_text)
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
        examples = ", ".join(repr(v) for v in _first_unique(rows["value"], 3))
        where = [f"{Path(s).name}:{r}" if multi_file else str(r) for s, r in zip(rows["source"], rows["row"], strict=True)]
        lines.append(f"  column {column!r}: {int(group['n'].sum())} row(s) {reason}, e.g. {examples} "
                     f"(rows {', '.join(where[:3])})")
    hint = ("no usable rows remain" if n_bad == n_rows
            else "fix the file, or set data.on_bad_rows: reject to set these rows aside in a rejects report")
    return DataError(f"{source}: {n_bad} of {n_rows} {table} row(s) cannot be used:\n" + "\n".join(lines) + f"\n{hint}")


def _check_columns(src: _Source, n_rows: int, config: DataConfig) -> None:
    """The whole-file checks of validate_tables: rows present, mapped and required columns present."""
    table, columns = src.table, list(src.columns)
    if n_rows == 0:
        raise DataError(f"{src.name}: the {table} file has no rows (columns: {', '.join(map(str, columns))})")
    mapping: dict[str, str] = getattr(config.columns, table)
    missing_mapped = {c: u for c, u in mapping.items() if u not in columns}
    if missing_mapped:
        c, u = next(iter(missing_mapped.items()))
        raise DataError(f"{src.name}: column {u!r} (mapped to {c!r} in data.columns.{table}) not found; "
                        f"the file has {len(columns)} columns: {', '.join(map(str, columns[:20]))}")
    renamed = [{u: c for c, u in mapping.items()}.get(col, col) for col in columns]
    missing = [c for c in CONTRACT[table]["required"] if c not in renamed]
    if missing:
        raise DataError(
            f"{src.name}: required {table} column(s) {', '.join(map(repr, missing))} not found in {n_rows} rows; "
            f"the file has columns: {', '.join(map(str, renamed[:20]))}. "
            f"Map your names with data.columns.{table} in the config, e.g. {{{missing[0]}: YourColumn}}"
        )


def _mixed_error(source: str, column: str, fmt: str, stats: list[dict]) -> DataError:
    n_mixed = sum(s["mixed"] for s in stats)
    present = sum(s["present"] for s in stats)
    ok = list(dict.fromkeys(v for s in stats for v in s["ok"]))[:2]
    bad = list(dict.fromkeys(v for s in stats for v in s["bad"]))[:3]
    return DataError(
        f"{source}: column {column!r} mixes date styles: {n_mixed} of {present} rows "
        f"do not match the style {fmt!r} of the others (e.g. {', '.join(map(repr, ok))}), "
        f"e.g. {', '.join(map(repr, bad))}. Set data.date_format (e.g. '%d/%m/%Y %H:%M') so every row is read the same way"
    )


def _date_formats(src: _Source, census: list[dict], config: DataConfig) -> dict[str, str]:
    """Decide each text date column's style over the whole file, as validate_tables would on all rows.

    Columns all in ISO 8601 need nothing. A column with ISO and other values is ISO: the others must be no
    date at all (checked in ``_split_chunk``). A column without ISO values takes the style of its first value,
    and the others must be no date either.
    """
    if config.date_format is not None:
        return {}
    mapping: dict[str, str] = getattr(config.columns, src.table)
    inverse = {u: c for c, u in mapping.items()}
    formats = {}
    for col in src.columns:
        name = inverse.get(col, col)
        stats = [c["dates"][col] for c in census if col in c["dates"]]
        present = sum(s["present"] for s in stats)
        iso = sum(s["iso"] for s in stats)
        if name not in _DATES or present == 0 or iso == present:
            continue
        if iso > 0:
            formats[col] = "ISO8601"
            continue
        first = stats[0]["first"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pandas' dayfirst hint; the local engine guesses alike
            fmt = pd.tseries.api.guess_datetime_format(first)
        if fmt is None:
            raise DataError(f"{src.name}: column {name!r}: its first value {first!r} is a date in no known style, "
                            "so the style of the column cannot be inferred; fix the value or set data.date_format")
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
