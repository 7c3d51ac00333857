"""Loading and validating the input tables: the data contract.

Three tables, CSV (UTF-8, also gzipped as ``.csv.gz``) or Parquet, chosen by extension:

* **transactions** (required): ``customer_id``, ``timestamp``, ``amount`` (negative = refund or return);
  optional ``order_id``, ``quantity``, ``category``, ``channel``, ``discount``.
* **tickets** (optional): ``customer_id``, ``opened_at``; optional ``first_response_at``, ``resolved_at``,
  ``channel``, ``csat`` (1-5), ``ticket_id``.
* **customers** (optional): ``customer_id``; optional ``signup_date``, ``loyalty_member``, ``loyalty_points``,
  ``nps`` (0-10) and any other attribute columns.

Users' own column names map onto these through ``data.columns`` in the config. Problems that make a whole
file unusable (missing file or column, empty file, dates in mixed styles) raise :class:`DataError`. Rows
that cannot be used (empty id, unparseable date, non-numeric amount, a ticket of an unknown customer, ...)
either raise too (``on_bad_rows: raise``, the default) or are set aside in ``Tables.rejects`` with the
reason (``on_bad_rows: reject``). No row is ever dropped without a trace. A CSV row with more fields than the
header (an unquoted ``1,234.50``) is such a row: none of its fields is read. Ids (customer, order, ticket) are
text; an integer written as a float (``12346.0``, or a Parquet float column) is read as the integer, so it
joins the same id written as an integer; transactions and customers that share almost no ids are refused.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard._io import EXTRA_FIELDS, header_line, header_names, input_format, read_rows, write_table
from churnguard.sources import DbSource

if TYPE_CHECKING:
    from churnguard.config import DataConfig

__all__ = ["CONTRACT", "FEATURE_INPUTS", "MAX_MAGNITUDE", "DataError", "DateCensus", "IdOverlap", "Tables",
           "check_columns", "check_id_overlap", "check_unique_columns", "date_census", "date_style",
           "feature_columns", "header", "id_overlap", "id_text", "last_day", "latest_plausible_day", "load_tables",
           "merge_census", "merge_overlap", "mixed_styles_error", "rows_error", "text_cells", "validate_tables"]

logger = logging.getLogger(__name__)

CONTRACT: dict[str, dict[str, tuple[str, ...]]] = {
    "transactions": {
        "required": ("customer_id", "timestamp", "amount"),
        "optional": ("order_id", "quantity", "category", "channel", "discount"),
    },
    "tickets": {
        "required": ("customer_id", "opened_at"),
        "optional": ("first_response_at", "resolved_at", "channel", "csat", "ticket_id"),
    },
    "customers": {
        "required": ("customer_id",),
        "optional": ("signup_date", "loyalty_member", "loyalty_points", "nps"),
    },
}
# Contract columns the features read (customers: every column, as attributes). Scoring reads only these; the
# other optional columns are checked when a table is loaded in full, but no score depends on them.
FEATURE_INPUTS: dict[str, tuple[str, ...] | None] = {
    "transactions": ("customer_id", "timestamp", "amount", "order_id"),
    "tickets": ("customer_id", "opened_at", "first_response_at", "resolved_at", "csat"),
    "customers": None,
}
_DATES = {"timestamp", "opened_at", "first_response_at", "resolved_at", "signup_date"}
_REQUIRED_VALUES = {"customer_id", "timestamp", "amount", "opened_at"}
# Numbers beyond this size are no real amounts or counts, and a few of them would add up to infinity.
MAX_MAGNITUDE = 1e12
_NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    "amount": (-MAX_MAGNITUDE, MAX_MAGNITUDE),
    "quantity": (-MAX_MAGNITUDE, MAX_MAGNITUDE),
    "discount": (-MAX_MAGNITUDE, MAX_MAGNITUDE),
    "csat": (1, 5),
    "nps": (0, 10),
    "loyalty_points": (-MAX_MAGNITUDE, MAX_MAGNITUDE),
}
_TEXT = {"customer_id", "order_id", "ticket_id", "category", "channel"}
_IDS = {"customer_id", "order_id", "ticket_id"}
_WHOLE_NUMBER = r"^([+-]?\d+)\.0*$"  # an integer written as a float: 12346.0
_LONG_ROW = "have more fields than the header (a value with an unquoted comma, such as 1,234.50?)"
# Below this share of the smaller table's ids found in the other, transactions and customers describe different
# customers, or write the same ids differently; judged from this many ids of each table on.
MIN_SHARED_IDS = 0.05
MIN_IDS_JUDGED = 20
_CHECKED = _DATES | _REQUIRED_VALUES | set(_NUMERIC_RANGES) | _TEXT | {"loyalty_member"}
_DAY = pd.Timedelta(days=1)
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}
ROW_COLUMN = "_source_row"  # optional input column carrying each row's number in its file
REJECT_COLUMNS = ["table", "source", "row", "customer_id", "column", "value", "reason"]


class DataError(ValueError):
    """An input file cannot be used as it is. The message names the file, the column, how many rows are
    affected and a few example values."""


def write_rejects(rejects: pd.DataFrame, path: str | Path) -> str | None:
    """Write the rows set aside to ``path`` and say how many there are, per table and reason (None: none)."""
    if rejects.empty:
        return None
    write_table(rejects, path)
    counts = rejects.groupby(["table", "reason"]).size()
    lines = ", ".join(f"{t}: {n} {r}" for (t, r), n in counts.items())
    return f"rejected rows: {len(rejects):,} ({lines}) -> {path}"


@dataclass(frozen=True)
class Tables:
    """Validated input tables in contract column names and types, plus the rows that were set aside."""

    transactions: pd.DataFrame
    tickets: pd.DataFrame | None = None
    customers: pd.DataFrame | None = None
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))

    def customer_ids(self) -> pd.Index:
        """Every customer known from transactions or the customers table."""
        ids = pd.Index(self.transactions["customer_id"].unique())
        if self.customers is not None:
            ids = ids.union(pd.Index(self.customers["customer_id"]))
        return ids

    def last_date(self) -> pd.Timestamp:
        """"Today" when none is given: :func:`last_day` of the transactions.

        Raises:
            DataError: no transaction has a usable timestamp, so there is no day to take.
        """
        day = last_day(self.transactions["timestamp"])
        if pd.isna(day):
            raise DataError("no transaction has a usable timestamp, so the scoring day cannot be taken from the "
                            "data; give it with --as-of YYYY-MM-DD")
        return day


def last_day(timestamps: pd.Series) -> pd.Timestamp:
    """"Today" when none is given: the last calendar day with a transaction, from validated (parsed)
    timestamps. Every engine decides it with this function, from the timestamps as validation reads them."""
    last = timestamps.max()
    return pd.NaT if pd.isna(last) else pd.Timestamp(last).normalize()


def latest_plausible_day() -> pd.Timestamp:
    """The last day a recorded event can fall on: tomorrow by the machine's clock (UTC), one day of slack for
    time zones. Later dates are typing errors or placeholders, never history."""
    return pd.Timestamp(datetime.now(UTC).date() + timedelta(days=1))


def check_unique_columns(names: list[str], source: str, table: str) -> None:
    """Raise :class:`DataError` when a column name repeats: which of the two to read would be a guess."""
    seen: set[str] = set()
    twice = list(dict.fromkeys(n for n in map(str, names) if n in seen or seen.add(n)))
    if twice:
        raise DataError(f"{source}: the {table} file has {len(twice)} column name(s) more than once: "
                        f"{', '.join(map(repr, twice[:5]))}; rename or drop the repeated columns")


def header(path: str | Path) -> list[str]:
    """A CSV or Parquet file's column names as written in it (pandas renames a repeated CSV name).

    Raises:
        ValueError: an unsupported file type, or a CSV file that is not UTF-8 text (see ``_io.header_line``).
    """
    if input_format(path) == "csv":
        return header_names(header_line(path))
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def check_columns(table: str, names: list[str], source: str, config: DataConfig, rows: int | None = None) -> None:
    """Raise :class:`DataError` when a ``table`` file with columns ``names`` has no rows (``rows`` is 0), or lacks
    a column the mapping names or a required column (``rows``: the file's row count when known, else None)."""
    if rows == 0:
        raise DataError(f"{source}: the {table} file has no rows (columns: {', '.join(map(str, names))})")
    mapping: dict[str, str] = getattr(config.columns, table)
    missing_mapped = {c: u for c, u in mapping.items() if u not in names}
    if missing_mapped:
        c, u = next(iter(missing_mapped.items()))
        raise DataError(
            f"{source}: column {u!r} (mapped to {c!r} in data.columns.{table}) not found; "
            f"the file has {len(names)} columns: {', '.join(map(str, names[:20]))}"
        )
    missing = [c for c in CONTRACT[table]["required"] if mapping.get(c, c) not in names]
    if missing:
        found = "" if rows is None else f" in {rows} rows"
        raise DataError(
            f"{source}: required {table} column(s) {', '.join(map(repr, missing))} not found{found}; "
            f"the file has columns: {', '.join(map(str, names[:20]))}. "
            f"Map your names with data.columns.{table} in the config, e.g. {{{missing[0]}: YourColumn}}"
        )


def feature_columns(table: str, names: list[str], config: DataConfig) -> list[str]:
    """Of a ``table`` file's columns ``names``, the ones the features read (:data:`FEATURE_INPUTS`, through the
    column mapping) and any the mapping names, in file order; all of them when one of those or a required
    column is missing, so that the error lists every column the file has."""
    used = FEATURE_INPUTS[table]
    mapping = getattr(config.columns, table)
    wanted = {mapping.get(c, c) for c in (*CONTRACT[table]["required"], *(used or ()))} | set(mapping.values())
    if used is None or any(mapping.get(c, c) not in names for c in CONTRACT[table]["required"]) or \
            any(u not in names for u in mapping.values()):
        return list(names)
    return [n for n in names if n in wanted]


def _first_unique(values: pd.Series, n: int) -> tuple[str, ...]:
    return tuple(str(v) for v in values.dropna().astype(str).unique()[:n])


def _examples(values: pd.Series, n: int = 3) -> str:
    return ", ".join(map(repr, _first_unique(values, n)))


def rows_error(source: str, table: str, n_rows: int, groups: list[tuple[str, str, int, pd.Series, list[str]]]
               ) -> DataError:
    """The error for a ``table`` file's unusable rows, from one group per (column, reason): the column, the
    reason, how many rows, their values (the first few distinct ones are quoted) and where the first rows are."""
    n_bad = sum(n for _, _, n, _, _ in groups)
    lines = [f"  column {column!r}: {n} row(s) {reason}, e.g. {_examples(values)} (rows {', '.join(where[:3])})"
             for column, reason, n, values, where in groups]
    hint = ("no usable rows remain" if n_bad == n_rows
            else "fix the file, or set data.on_bad_rows: reject to set these rows aside in a rejects report")
    return DataError(f"{source}: {n_bad} of {n_rows} {table} row(s) cannot be used:\n" + "\n".join(lines)
                     + f"\n{hint}")


class _Checker:
    """Collects bad rows of one table (first reason wins) and turns them into an error or rejects."""

    def __init__(self, df: pd.DataFrame, table: str, source: str) -> None:
        # Row numbers as the user counts them: 1-based data rows, or the numbers a partitioned reader recorded.
        self.rows = df.pop(ROW_COLUMN).to_numpy() if ROW_COLUMN in df else np.arange(1, len(df) + 1)
        long_rows = df.pop(EXTRA_FIELDS) if EXTRA_FIELDS in df else None
        self.df, self.table, self.source = df, table, source
        self.reason = pd.Series(pd.NA, index=df.index, dtype="object")
        self.column = pd.Series(pd.NA, index=df.index, dtype="object")
        self.value = pd.Series(pd.NA, index=df.index, dtype="object")
        self._flagged = np.zeros(len(df), dtype=bool)  # rows with a reason already
        if long_rows is not None:  # first: their other reasons would come from fields read out of place
            self.flag(long_rows.notna(), "(whole row)", _LONG_ROW, long_rows)

    def flag(self, mask: pd.Series | np.ndarray, column: str, reason: str, raw: pd.Series | None = None) -> None:
        new = np.asarray(mask, dtype=bool) & ~self._flagged
        if new.any():
            self._flagged |= new
            self.reason[new] = reason
            self.column[new] = column
            src = raw if raw is not None else self.df.get(column, None)
            if src is not None:
                self.value[new] = src[new].astype(str)

    def finish(self, mode: str, part: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
        bad = pd.Series(self._flagged, index=self.reason.index)
        n_bad = int(bad.sum())
        if n_bad == 0 or len(self.df) == 0:
            return self.df, pd.DataFrame(columns=REJECT_COLUMNS)
        if mode == "raise" or (n_bad == len(self.df) and not part):
            groups = self.reason[bad].groupby([self.column[bad], self.reason[bad]]).groups.items()
            raise rows_error(self.source, self.table, len(self.df), [
                (column, reason, len(idx), self.value[idx], [str(self.rows[i]) for i in list(idx)[:3]])
                for (column, reason), idx in groups])
        rejects = pd.DataFrame(
            {
                "table": self.table,
                "source": self.source,
                "row": self.rows[bad.to_numpy()],
                "customer_id": self.df.loc[bad, "customer_id"].astype("object").to_numpy()
                if "customer_id" in self.df
                else pd.NA,
                "column": self.column[bad].to_numpy(),
                "value": self.value[bad].to_numpy(),
                "reason": self.reason[bad].to_numpy(),
            }
        )
        if not part:  # a part's rows are counted with the whole input's
            logger.warning("%s: set aside %d of %d %s rows (see rejects)", self.source, n_bad, len(self.df), self.table)
        return self.df.loc[~bad].reset_index(drop=True), rejects


def text_cells(raw: pd.Series) -> pd.Series:
    """Cells as the checks read text: stripped, blank cells missing (they are missing values, not bad ones)."""
    text = raw.astype("string").str.strip()
    return text.mask(text == "")


def id_text(raw: pd.Series) -> pd.Series:
    """Ids as text (:func:`text_cells`), an integer written as a float without its decimals (``12346.0``, or
    12346.0 in a float column, is ``12346``), so ids stored as floats join the same ids written as integers."""
    if pd.api.types.is_float_dtype(raw):
        whole = raw.notna() & (raw % 1 == 0) & (raw.abs() < 2**63)
        text = raw.astype("str")
        text[whole] = raw[whole].astype("int64").astype("str")
        return text
    if not (pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw)):
        return raw.astype("str")
    text = text_cells(raw).astype("str")
    if not text.str.contains(".", regex=False).any():  # one cheap pass spares the regular expression
        return text
    return text.str.replace(_WHOLE_NUMBER, r"\1", regex=True)


def dates_out_of_range(parsed: pd.Series) -> pd.Series:
    """Whether each parsed date lies outside the range of nanosecond timestamps (about 1678-2261)."""
    return (parsed < pd.Timestamp.min) | (parsed > pd.Timestamp.max)


def _parsed(raw: pd.Series, column: str, source: str, date_format: str | None) -> pd.Series:
    """A date column parsed at the resolution it comes in, naive UTC (mixed date styles raise; values that parse
    in no style come back as NaT)."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    elif date_format is not None:
        parsed = pd.to_datetime(text_cells(raw), format=date_format, errors="coerce", utc=True)
    else:
        parsed = _infer_and_parse(text_cells(raw), column, source)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed


def _infer_and_parse(text: pd.Series, column: str, source: str) -> pd.Series:
    """Parse a text date column in the style :func:`date_style` decides on all its values."""
    iso, census = date_census(text)
    fmt = date_style(census, source, column)
    if fmt is None:
        return iso
    parsed, census = date_census(text, fmt)
    if census.mixed:
        raise mixed_styles_error(census, source, column, fmt)
    return parsed


@dataclass(frozen=True)
class DateCensus:
    """A summary of some values of a text date column (:func:`date_census`); the summaries of a column's parts
    merge (:func:`merge_census`) into the summary of the whole, so a column read in chunks is decided as if whole.
    """

    present: int = 0
    parsed: int = 0
    first: str | None = None
    mixed: int = 0
    ok: tuple[str, ...] = ()
    bad: tuple[str, ...] = ()


def date_census(text: pd.Series, fmt: str | None = None) -> tuple[pd.Series, DateCensus]:
    """Parse text dates (:func:`text_cells`) in the style ``fmt`` (None: ISO 8601, to decide the style) and
    summarise them: values present, parsed, the first one; with a style given, also how many others are dates in
    another style (``mixed``) and examples of both, for :func:`mixed_styles_error`. Unparsed values are NaT."""
    parsed = pd.to_datetime(text, format=fmt or "ISO8601", errors="coerce", utc=True)
    ok, present = parsed.notna(), text.notna()
    first = str(text[present].iloc[0]) if present.any() else None
    if fmt is None:
        return parsed, DateCensus(int(present.sum()), int(ok.sum()), first)
    failed = text[present & ~ok]
    other = pd.to_datetime(failed, format="mixed", errors="coerce", utc=True).notna()
    return parsed, DateCensus(int(present.sum()), int(ok.sum()), first, int(other.sum()),
                              _first_unique(text[ok], 2), _first_unique(failed[other], 3))


def merge_census(a: DateCensus, b: DateCensus) -> DateCensus:
    """The :func:`date_census` of two parts of a column together (``a`` before ``b``)."""
    return DateCensus(a.present + b.present, a.parsed + b.parsed, a.first if a.first is not None else b.first,
                      a.mixed + b.mixed, tuple(dict.fromkeys(a.ok + b.ok))[:2], tuple(dict.fromkeys(a.bad + b.bad))[:3])


def date_style(census: DateCensus, source: str, column: str) -> str | None:
    """The style of a text date column, from the census of all its values before a style is known: None when
    there is nothing to decide (no values, or all ISO 8601); ISO 8601 when some values are; else the style pandas
    guesses from the first value (DataError when it guesses none). Other values must be no date at all.
    """
    if census.present == 0 or census.parsed == census.present:
        return None
    if census.parsed:
        return "ISO8601"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pandas' dayfirst hint: the first value decides, on purpose
        fmt = pd.tseries.api.guess_datetime_format(census.first)
    if fmt is None:
        raise DataError(f"{source}: column {column!r}: its first value {census.first!r} is a date in no known "
                        "style, so the style of the column cannot be inferred; fix the value or set data.date_format")
    return fmt


def mixed_styles_error(census: DateCensus, source: str, column: str, fmt: str) -> DataError:
    """The error for a column whose census in the style ``fmt`` found values that are dates in another style."""
    return DataError(
        f"{source}: column {column!r} mixes date styles: {census.mixed} of {census.present} rows "
        f"do not match the style {fmt!r} of the others (e.g. {', '.join(map(repr, census.ok))}), "
        f"e.g. {', '.join(map(repr, census.bad))}. "
        "Set data.date_format (e.g. '%d/%m/%Y %H:%M') so every row is read the same way"
    )


def _number(value: float) -> str:
    """A bound in plain digits with thousands separators."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def _parse_bool(raw: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype("boolean")
    text = raw.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    out[text.isin(_TRUE).fillna(False)] = True
    out[text.isin(_FALSE).fillna(False)] = False
    return out


def _prepare(df: pd.DataFrame, table: str, source: str, config: DataConfig, allow_empty: bool = False,
             styles: dict[str, str] | None = None) -> _Checker:
    """Rename to contract names, check columns, parse types (dates in ``styles``, by contract name, when given);
    bad rows are flagged on the returned checker."""
    mapping: dict[str, str] = getattr(config.columns, table)
    names = [c for c in df.columns if c not in (ROW_COLUMN, EXTRA_FIELDS)]
    check_columns(table, names, source, config, rows=None if df.empty and allow_empty else len(df))
    df = df.rename(columns={u: c for c, u in mapping.items()})
    df = df.reset_index(drop=True)
    check = _Checker(df, table, source)
    out = df.copy(deep=False)  # checked columns are replaced below; the others are kept as they are
    for column in df.columns:
        raw = df[column]
        if column not in _CHECKED:
            continue
        if pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw):
            raw = text_cells(raw)
        if column in _DATES:
            parsed = _parsed(raw, column, source, (styles or {}).get(column, config.date_format))
            far = dates_out_of_range(parsed)
            check.flag(far, column, "are dates outside the years 1678-2261", raw)
            parsed = parsed.mask(far).astype("datetime64[ns]")
            check.flag(raw.notna() & parsed.isna(), column, "have an unparseable date", raw)
            latest = latest_plausible_day()
            check.flag(parsed >= latest, column, f"are dated after today ({(latest - _DAY).date()})", raw)
            out[column] = parsed
        elif column in _NUMERIC_RANGES:
            num = pd.to_numeric(raw, errors="coerce").astype("float64")
            check.flag(raw.notna() & num.isna(), column, "are not numeric", raw)
            check.flag(num.isin([np.inf, -np.inf]), column, "are not finite numbers", raw)
            lo, hi = _NUMERIC_RANGES[column]
            check.flag(num.notna() & ~num.between(lo, hi), column, f"lie outside {_number(lo)}..{_number(hi)}", raw)
            out[column] = num
        elif column == "loyalty_member":
            flags = _parse_bool(raw)
            check.flag(raw.notna() & flags.isna(), column, "are not true/false", raw)
            out[column] = flags
        elif column in _TEXT:
            out[column] = id_text(raw) if column in _IDS else raw.astype("str")
        if column in _REQUIRED_VALUES:
            check.flag(out[column].isna(), column, "are empty", raw)
    check.df = out
    return check


def validate_tables(
    transactions: pd.DataFrame,
    tickets: pd.DataFrame | None = None,
    customers: pd.DataFrame | None = None,
    *,
    config: DataConfig,
    sources: dict[str, str] | None = None,
    allow_empty: bool = False,
    date_styles: dict[str, dict[str, str]] | None = None,
) -> Tables:
    """Validate in-memory tables against the contract and return them typed, with contract column names.

    Args:
        transactions, tickets, customers: raw frames in the user's column names.
        config: column mapping, date format and the bad-row policy.
        sources: names used in messages (file paths), per table; defaults to the table name.
        allow_empty: the tables are a part of the input (a customer partition): accept tables without rows or
            without usable rows, which only the whole input can judge.
        date_styles: per table, the style of date columns (by contract name) decided over the whole input;
            columns not named are read as without it.

    Raises:
        DataError: a whole table is unusable, or rows are bad and ``config.on_bad_rows`` is ``raise``.
    """
    sources, styles = sources or {}, date_styles or {}
    all_rejects = []
    checks = {
        "transactions": _prepare(transactions, "transactions", sources.get("transactions", "transactions"), config,
                                 allow_empty, styles.get("transactions"))
    }
    if customers is not None:
        c = _prepare(customers, "customers", sources.get("customers", "customers"), config, allow_empty,
                     styles.get("customers"))
        dup = c.df["customer_id"].duplicated(keep=False) & c.df["customer_id"].notna()
        c.flag(dup, "customer_id", "are duplicate customer ids")
        checks["customers"] = c
    if tickets is not None:
        t = _prepare(tickets, "tickets", sources.get("tickets", "tickets"), config, allow_empty, styles.get("tickets"))
        for col, reason in (("first_response_at", "are earlier than opened_at"), ("resolved_at", "are earlier than opened_at")):
            if col in t.df:
                t.flag(t.df[col] < t.df["opened_at"], col, reason)
        checks["tickets"] = t
    frames: dict[str, pd.DataFrame] = {}
    for name in ("transactions", "customers"):
        if name in checks:
            frames[name], rej = checks[name].finish(config.on_bad_rows, allow_empty)
            all_rejects.append(rej)
    if "tickets" in checks:
        t = checks["tickets"]
        known = [frames[name]["customer_id"] for name in ("transactions", "customers") if name in frames]
        t.flag(t.df["customer_id"].notna().to_numpy() & ~_isin(t.df["customer_id"], known), "customer_id",
               "belong to customers found in neither transactions nor customers")
        frames["tickets"], rej = t.finish(config.on_bad_rows, allow_empty)
        all_rejects.append(rej)
    non_empty = [r for r in all_rejects if not r.empty]
    rejects = pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame(columns=REJECT_COLUMNS)
    tables = Tables(frames["transactions"], frames.get("tickets"), frames.get("customers"), rejects)
    if not allow_empty:  # a part's ids are judged with the whole input's
        check_id_overlap(id_overlap(tables), {t: sources.get(t, t) for t in ("transactions", "customers")})
    return tables


@dataclass(frozen=True)
class IdOverlap:
    """The distinct customer ids of the transactions and of the customers table, how many are in both, and the
    first few of each table that the other lacks. The overlaps of parts of the input split by customer add up
    (:func:`merge_overlap`)."""

    transactions: int = 0
    customers: int = 0
    shared: int = 0
    only_transactions: tuple[str, ...] = ()
    only_customers: tuple[str, ...] = ()


def id_overlap(tables: Tables) -> IdOverlap:
    """The :class:`IdOverlap` of validated tables (empty without a customers table)."""
    if tables.customers is None:
        return IdOverlap()
    tx = tables.transactions["customer_id"].dropna().drop_duplicates()
    cu = tables.customers["customer_id"].dropna().drop_duplicates()
    tx_in_cu, cu_in_tx = _isin(tx, [cu]), _isin(cu, [tx])
    return IdOverlap(len(tx), len(cu), int(tx_in_cu.sum()), _first_unique(tx[~tx_in_cu], 3),
                     _first_unique(cu[~cu_in_tx], 3))


def merge_overlap(a: IdOverlap, b: IdOverlap) -> IdOverlap:
    """The :class:`IdOverlap` of two parts of the input together (``a`` before ``b``)."""
    return IdOverlap(a.transactions + b.transactions, a.customers + b.customers, a.shared + b.shared,
                     (a.only_transactions + b.only_transactions)[:3], (a.only_customers + b.only_customers)[:3])


def check_id_overlap(overlap: IdOverlap, sources: dict[str, str]) -> None:
    """Raise :class:`DataError` when the transactions and the customers table share almost no customer ids
    (under :data:`MIN_SHARED_IDS` of the smaller table's, when each has :data:`MIN_IDS_JUDGED` ids or more):
    scoring them would invent customers without history and leave the buyers without their attributes."""
    smaller = min(overlap.transactions, overlap.customers)
    if smaller < MIN_IDS_JUDGED or overlap.shared >= MIN_SHARED_IDS * smaller:
        return
    tx, cu = sources["transactions"], sources["customers"]
    raise DataError(
        f"{tx} and {cu} share {overlap.shared:,} customer ids: {overlap.transactions:,} in the transactions, "
        f"{overlap.customers:,} in the customers; e.g. {', '.join(map(repr, overlap.only_transactions))} only in "
        f"{tx}, {', '.join(map(repr, overlap.only_customers))} only in {cu}. Write the ids the same way in both "
        "files (a mapped column of the wrong table, or ids with a prefix in one of them?)")


def _isin(values: pd.Series, among: list[pd.Series]) -> np.ndarray:
    """Whether each (text) value occurs in any of ``among``; Arrow's hash lookup, several times faster than
    ``Series.isin`` on a million ids. Missing values count as not found."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def arrow(s: pd.Series) -> pa.Array:
        return pa.array(s.astype("str"), from_pandas=True).cast(pa.large_string())

    x = arrow(values)
    found = np.zeros(len(values), dtype=bool)
    for other in sorted(among, key=len):  # the smaller table first; the larger only for the values still missing
        rest = np.flatnonzero(~found)
        if len(rest) == 0:
            break
        hit = pc.is_in(x.take(pa.array(rest)), value_set=pc.unique(arrow(other)), skip_nulls=True)
        found[rest] = np.asarray(hit.fill_null(False), dtype=bool)
    return found


def _read(path: str | Path | DbSource, table: str, config: DataConfig, feature_inputs_only: bool = False
          ) -> pd.DataFrame:
    """A file's raw rows (``_io.read_rows``); a row longer than the header keeps only its customer id. A
    database table's rows (:func:`_read_db`)."""
    if isinstance(path, DbSource):
        return _read_db(path, table, config, feature_inputs_only)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {table} file not found")
    try:
        check_unique_columns(header(path), str(path), table)
        return read_rows(path, keep=(getattr(config.columns, table).get("customer_id", "customer_id"),))
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the {table} file is empty") from None
    except ValueError as exc:
        raise DataError(f"{path}: cannot read {table} file: {exc}") from None


def _read_db(source: DbSource, table: str, config: DataConfig, feature_inputs_only: bool) -> pd.DataFrame:
    """A database table's (or query's) rows, as typed as the database holds them; with ``feature_inputs_only``
    only the columns the features read (:func:`feature_columns`)."""
    from churnguard.sources import read_source, source_columns

    names = source_columns(source)
    check_unique_columns(names, str(source), table)
    return read_source(source, feature_columns(table, names, config) if feature_inputs_only else None)


def load_tables(
    transactions: str | Path | DbSource,
    tickets: str | Path | DbSource | None = None,
    customers: str | Path | DbSource | None = None,
    *,
    config: DataConfig,
    feature_inputs_only: bool = False,
) -> Tables:
    """Read the files (or database tables, see ``churnguard.sources``) and validate them (see
    :func:`validate_tables`); ``feature_inputs_only``: of a database table, read only the columns the features
    use."""
    raw = {"transactions": _read(transactions, "transactions", config, feature_inputs_only)}
    sources = {"transactions": str(transactions)}
    for name, path in (("tickets", tickets), ("customers", customers)):
        if path is not None:
            raw[name] = _read(path, name, config, feature_inputs_only)
            sources[name] = str(path)
    return validate_tables(raw["transactions"], raw.get("tickets"), raw.get("customers"), config=config, sources=sources)
