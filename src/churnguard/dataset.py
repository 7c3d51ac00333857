"""Loading and validating the input tables: the data contract.

Four tables, CSV (UTF-8, also gzipped as ``.csv.gz``) or Parquet, chosen by extension:

* **transactions** (required): ``customer_id``, ``timestamp``, ``amount`` (negative = refund or return; without
  an ``amount`` column, ``quantity`` x ``unit_price``); optional ``order_id``, ``quantity``, ``unit_price``,
  ``category``, ``channel``, ``discount``.
* **tickets** (optional): ``customer_id``, ``opened_at``; optional ``first_response_at``, ``resolved_at``,
  ``channel``, ``csat`` (1-5), ``ticket_id``.
* **customers** (optional): ``customer_id``; optional ``signup_date``, ``loyalty_member``, ``loyalty_points``,
  ``nps`` (0-10) and any other attribute columns.
* **events** (optional): ``customer_id``, ``timestamp``, ``event_type`` (``visit``, ``page_view``,
  ``app_session``, ``email_sent``, ``email_open``, ``email_click``, ``cart_add``, ... read in lower case);
  optional ``duration_seconds`` (>= 0), ``channel``, ``session_id``. Events of customers found in neither the
  transactions nor the customers table are bad rows.
* **campaigns** (for ``train-uplift``): ``customer_id``, ``sent_at`` (the day the action was taken), ``action``,
  ``treated`` (true = contacted, false = held out as control); optional ``campaign_id``, ``cost``. A scores file
  of ``churnguard score`` is read as one campaign (:func:`load_campaigns`).

Users' own column names map onto these through ``data.columns`` in the config; CSV files are read in
``data.encoding`` with ``data.delimiter``; rows matching ``data.exclude`` (postage, fees) are left out before
validation, and how many is logged per rule. Problems that make a whole
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
import time
import warnings
from dataclasses import dataclass, field, replace
from datetime import date
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard._io import (
    EXTRA_FIELDS,
    CsvDialect,
    column_names,
    csv_blocks,
    first_record_width,
    header_line,
    header_names,
    input_format,
    open_bytes,
    parquet_blocks,
    read_rows,
    spreadsheet_restored,
    spreadsheet_safe,
    table_suffix,
    take,
    take_codes,
    text_offsets,
    write_table,
)
from churnguard.sources import DbSource

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    import pyarrow as pa

    from churnguard.config import DataConfig

__all__ = ["CONTRACT", "FEATURE_INPUTS", "MAX_MAGNITUDE", "DataError", "DateCensus", "IdCodes", "IdOverlap", "Tables",
           "arrow_column", "category_codes", "check_columns", "check_id_overlap", "check_unique_columns",
           "date_census", "date_style", "dictionary_codes", "feature_columns", "header", "id_overlap", "id_text",
           "last_day", "latest_plausible_date", "latest_plausible_day", "load_campaigns", "load_tables",
           "merge_census", "merge_overlap", "missing_tables_note", "mixed_styles_error", "rows_error", "text_cells",
           "text_dtype", "validate_tables"]

logger = logging.getLogger(__name__)

CONTRACT: dict[str, dict[str, tuple[str, ...]]] = {
    "transactions": {
        "required": ("customer_id", "timestamp", "amount"),
        "optional": ("order_id", "quantity", "unit_price", "category", "channel", "discount"),
    },
    "tickets": {
        "required": ("customer_id", "opened_at"),
        "optional": ("first_response_at", "resolved_at", "channel", "csat", "ticket_id"),
    },
    "customers": {
        "required": ("customer_id",),
        "optional": ("signup_date", "loyalty_member", "loyalty_points", "nps"),
    },
    "events": {
        "required": ("customer_id", "timestamp", "event_type"),
        "optional": ("duration_seconds", "channel", "session_id"),
    },
    "campaigns": {
        "required": ("customer_id", "sent_at", "action", "treated"),
        "optional": ("campaign_id", "cost"),
    },
}
# Contract columns the features read (customers: every column, as attributes). ``features`` and ``score`` read
# only these; the other optional columns are checked when a table is loaded in full (training, reports), but no
# feature or score depends on them.
FEATURE_INPUTS: dict[str, tuple[str, ...] | None] = {
    "transactions": ("customer_id", "timestamp", "amount", "order_id"),
    "tickets": ("customer_id", "opened_at", "first_response_at", "resolved_at", "csat"),
    "customers": None,
    "events": ("customer_id", "timestamp", "event_type", "duration_seconds", "channel", "session_id"),
}
_DATES = {"timestamp", "opened_at", "first_response_at", "resolved_at", "signup_date", "sent_at"}
_REQUIRED_VALUES = {"customer_id", "timestamp", "amount", "opened_at", "event_type", "sent_at", "action", "treated"}
# Numbers beyond this size are no real amounts or counts, and a few of them would add up to infinity.
MAX_MAGNITUDE = 1e12
_NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    "amount": (-MAX_MAGNITUDE, MAX_MAGNITUDE),
    "quantity": (-MAX_MAGNITUDE, MAX_MAGNITUDE),
    "unit_price": (-MAX_MAGNITUDE, MAX_MAGNITUDE),
    "discount": (-MAX_MAGNITUDE, MAX_MAGNITUDE),
    "csat": (1, 5),
    "nps": (0, 10),
    "loyalty_points": (-MAX_MAGNITUDE, MAX_MAGNITUDE),
    "duration_seconds": (0, MAX_MAGNITUDE),
    "cost": (0, MAX_MAGNITUDE),
}
_TEXT = {"customer_id", "order_id", "ticket_id", "category", "channel", "event_type", "session_id", "action",
         "campaign_id"}
# Text columns read from Parquet as categoricals (one code per row, each distinct value checked once): the
# events table's, many rows over fewer distinct values; of them, those with few distinct values.
_CODED = {"events": ("customer_id", "event_type", "channel", "session_id")}
_FEW = ("event_type", "channel")
# Of them, those read as text and encoded by Arrow's hash (``_io.read_coded``), not as the file's dictionaries: the
# customer ids, too many distinct values a row group for its dictionary page.
_HASHED = {"events": ("customer_id",)}
_IDS = {"customer_id", "order_id", "ticket_id", "session_id", "action", "campaign_id"}
_FLAGS = {"loyalty_member", "treated"}
_WHOLE_NUMBER = r"^([+-]?\d+)\.0*$"  # an integer written as a float: 12346.0
_LONG_ROW = "have more fields than the header (a value with an unquoted comma, such as 1,234.50?)"
# Below this share of the smaller table's ids found in the other, transactions and customers describe different
# customers, or write the same ids differently; judged from this many ids of each table on.
MIN_SHARED_IDS = 0.05
MIN_IDS_JUDGED = 20
_CHECKED = _DATES | _REQUIRED_VALUES | set(_NUMERIC_RANGES) | _TEXT | _FLAGS
_DAY = pd.Timedelta(days=1)
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}
BLOCK_ROWS = 2**20  # rows of a Parquet file read and checked at once (:func:`load_tables`)
CSV_BLOCK_BYTES = 2**26  # bytes of a CSV file read and checked at once (about 800,000 rows of transactions)
ROW_COLUMN = "_source_row"  # optional input column carrying each row's number in its file
REJECT_COLUMNS = ["table", "source", "row", "customer_id", "column", "value", "reason"]


# Model features that only a tickets, customers or events table gives (churnguard.features.kernel's support and
# attribute features, churnguard.features.engagement's; free customer attributes are attr_<name>).
_TABLE_FEATURES = {
    "tickets": ("tickets_total", "tickets_per_order", "csat_mean", "open_tickets"),
    "customers": ("loyalty_member", "loyalty_points", "nps", "nps_group", "days_since_signup"),
    "events": ("days_since_last_visit", "visits_since_last_order"),
}


def missing_tables_note(feature_names: list[str], given: dict[str, bool]) -> str | None:
    """The warning for scoring a model without a table it was trained with (None when nothing is missing):
    which tables, and what it does to the scores. ``given``: per table, whether the command was given it."""
    used = {t for t, names in _TABLE_FEATURES.items() if any(n in feature_names for n in names)}
    if any(n.startswith("attr_") for n in feature_names):
        used.add("customers")
    missing = [t for t in ("tickets", "customers", "events") if t in used and not given.get(t, False)]
    if not missing:
        return None
    what = {"tickets": "support history (tickets, response times, CSAT)",
            "customers": "attributes (loyalty, NPS, signup date, ...)",
            "events": "engagement (visits, sessions, emails)"}
    tables = " and ".join(missing)
    options = " ".join(f"--{t} FILE" for t in missing)
    return (f"warning: this model was trained with {tables} but is scored without: every customer's "
            f"{' and '.join(what[t] for t in missing)} counts as unknown, so the risks rest on purchases alone "
            f"and are not the ones the model was evaluated on. Give {options} to score as trained.")


class DataError(ValueError):
    """An input file cannot be used as it is. The message names the file, the column, how many rows are
    affected and a few example values."""


def write_rejects(rejects: pd.DataFrame, path: str | Path) -> str | None:
    """Write the rows set aside to ``path`` and say how many there are, per table and reason (None: none). In a
    CSV file, cells a spreadsheet would run as formulas are quoted (:func:`churnguard._io.spreadsheet_safe`)."""
    if rejects.empty:
        return None
    write_table(spreadsheet_safe(rejects) if table_suffix(Path(path)) == ".csv" else rejects, path)
    return f"{rejects_summary(rejects)} -> {path}"


def rejects_summary(rejects: pd.DataFrame) -> str | None:
    """How many rows were set aside, per table and reason (None: none)."""
    if rejects.empty:
        return None
    counts = rejects.groupby(["table", "reason"]).size()
    lines = ", ".join(f"{t}: {n:,} {r}" for (t, r), n in counts.items())
    return f"rejected rows: {len(rejects):,} ({lines})"


@dataclass(frozen=True)
class Tables:
    """Validated input tables in contract column names and types, plus the rows that were set aside and how
    many rows ``data.exclude`` left out (per table, per rule)."""

    transactions: pd.DataFrame
    tickets: pd.DataFrame | None = None
    customers: pd.DataFrame | None = None
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)
    events: pd.DataFrame | None = None
    ids: dict[str, IdCodes] = field(default_factory=dict)  # per table, its customer ids as codes

    def id_codes(self, table: str) -> IdCodes | None:
        """Table ``table``'s customer ids as :class:`IdCodes`, when its frame still holds the column they were
        made for (None after the frame was changed, or for a table not validated here)."""
        codes, frame = self.ids.get(table), getattr(self, table)
        return codes if codes is not None and frame is not None and codes.describes(frame["customer_id"]) else None

    def has_ids(self, table: str, ids: pd.Series) -> np.ndarray:
        """Whether each row's customer id in table ``table`` is one of ``ids`` (text); looked up once per distinct
        id when the table has its :class:`IdCodes`."""
        codes = self.id_codes(table)
        if codes is None:
            return _isin(getattr(self, table)["customer_id"], [ids])
        return _codes_found((codes.distinct, codes.codes), [_arrow_text(ids).combine_chunks()])

    def ids_not_in(self, ids: pd.Series, tables: tuple[str, ...]) -> pd.Index:
        """The distinct customer ids of the tables named (those present) that are not among ``ids`` (text). When
        the tables share one array of distinct ids (:class:`IdCodes`), ``ids`` are looked up once, in it."""
        tables = tuple(t for t in tables if getattr(self, t) is not None)
        codes = [self.id_codes(t) for t in tables]
        if not tables or any(c is None or c.distinct is not codes[0].distinct for c in codes):
            missing = [getattr(self, t)["customer_id"][~self.has_ids(t, ids)] for t in tables]
            return pd.Index(pd.concat(missing, ignore_index=True).unique()) if missing else pd.Index([])
        used = np.logical_or.reduce([c.present() for c in codes])
        found = _codes_found((codes[0].distinct, np.arange(len(used), dtype=np.int32)),
                             [_arrow_text(ids).combine_chunks()])
        left = codes[0].distinct.filter(used & ~found)
        return pd.Index(pd.array(left, dtype=text_dtype(getattr(self, tables[0])["customer_id"])))

    def customer_ids(self) -> pd.Index:
        """Every customer known from transactions or the customers table (with a customers table: sorted)."""
        codes = [self.id_codes("transactions"), self.id_codes("customers")]
        if all(c is not None and c.distinct is codes[0].distinct for c in codes):  # sorted distinct ids
            used = np.logical_or.reduce([c.present() for c in codes])
            return pd.Index(pd.array(codes[0].distinct.filter(used), dtype=text_dtype(self.transactions["customer_id"])))
        ids = pd.Index(_as_text(self.transactions["customer_id"]).unique())
        if self.customers is not None:
            ids = ids.union(pd.Index(_as_text(self.customers["customer_id"])))
        return ids

    def last_date(self) -> pd.Timestamp:
        """"Today" when none is given: :func:`last_day` of the transactions.

        Raises:
            DataError: no transaction has a usable timestamp, so there is no day to take.
        """
        return today(self.transactions["timestamp"])


@dataclass(frozen=True)
class IdCodes:
    """A validated column of customer ids as integer codes: ``distinct``, distinct ids (an Arrow text array, as
    validation reads ids), and per row its position in them. Validation encodes each id once; the checks across
    tables and the feature build then work on the codes and the distinct ids, not on every row's text. The codes
    describe the frame column whose array is ``column`` (:meth:`describes`), no other.

    The tables validated together share one ``distinct`` array (the same object): every customer id of their
    usable rows, each once, so that a table's rows use only some of them (:meth:`present`) and the ids of two
    tables compare as integers."""

    distinct: pa.Array
    codes: np.ndarray  # int32, one per row
    column: object  # the ids' ``Series.array``

    def describes(self, ids: pd.Series) -> bool:
        """Whether these are the codes of ``ids`` (the very array they were made for: any change makes a new one)."""
        return ids.array is self.column

    def present(self) -> np.ndarray:
        """Whether each of the distinct ids occurs in some row."""
        return np.bincount(self.codes, minlength=len(self.distinct)) > 0


def text_dtype(ids: pd.Series):
    """The text type of an id column: its own, or a categorical's categories' (validated ids are categoricals of
    the tables' distinct ids, :class:`IdCodes`)."""
    return ids.cat.categories.dtype if isinstance(ids.dtype, pd.CategoricalDtype) else ids.dtype


def _as_text(ids: pd.Series) -> pd.Series:
    """An id column as text (a categorical's values in its categories' type)."""
    return ids.astype(text_dtype(ids)) if isinstance(ids.dtype, pd.CategoricalDtype) else ids


def dictionary_codes(values: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The distinct values of an Arrow text column in order of first occurrence and each row's position in
    them (int32; -1 for a missing value), by one dictionary encoding on this thread. (In two halves on two
    threads, joined after, it took more CPU, and on two cores more wall time too: each half's hash table holds
    most of the distinct ids. 2.6M customer ids of a partition of 1M customers: 55-62 ms of CPU against 90-133
    ms, 59-76 ms of wall time against 95-202 ms.)"""
    import pyarrow as pa

    return _dictionary_encode([c.cast(pa.large_string()) for c in values.chunks])


def joint_codes(parts: list[tuple[pa.Array, np.ndarray]]) -> tuple[pa.Array, np.ndarray]:
    """The :func:`dictionary_codes` of a column from those of its parts (each: distinct values and codes, -1
    missing; in row order): the distinct values of all parts in order of first occurrence and each row's
    position in them."""
    import pyarrow as pa

    if len(parts) == 1:
        return parts[0]
    joint, mapped = _dictionary_encode([pa.concat_arrays([v.cast(pa.large_string()) for v, _ in parts])])
    codes, start = [], 0
    for values, local in parts:
        codes.append(take_codes(np.append(mapped[start : start + len(values)], -1).astype(np.int32), local))
        start += len(values)
    return joint, np.concatenate(codes)


def _dictionary_encode(chunks: list) -> tuple[pa.Array, np.ndarray]:
    """:func:`dictionary_codes` of some chunks, on this thread (``_io.text_codes``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from churnguard._io import text_codes

    indices, dictionary = text_codes(pa.chunked_array(chunks, type=pa.large_string()))
    if not indices:
        return dictionary, np.zeros(0, dtype=np.int32)
    codes = [pc.fill_null(c, -1).to_numpy(zero_copy_only=False) for c in indices]
    return dictionary, np.concatenate(codes).astype(np.int32, copy=False)


def last_day(timestamps: pd.Series) -> pd.Timestamp:
    """"Today" when none is given: the last calendar day with a transaction, from validated (parsed)
    timestamps. Every engine decides it with this function, from the timestamps as validation reads them."""
    last = timestamps.max()
    return pd.NaT if pd.isna(last) else pd.Timestamp(last).normalize()


def today(timestamps: pd.Series) -> pd.Timestamp:
    """:func:`last_day` of validated timestamps (of one table, or the latest of each of its partitions).

    Raises:
        DataError: no transaction has a usable timestamp, so there is no day to take.
    """
    day = last_day(timestamps)
    if pd.isna(day):
        raise DataError("no transaction has a usable timestamp, so the scoring day cannot be taken from the "
                        "data; give it with --as-of YYYY-MM-DD")
    return day


def latest_plausible_day() -> pd.Timestamp:
    """The last day a recorded event can fall on: tomorrow by the machine's clock (UTC), one day of slack for
    time zones. Later dates are typing errors or placeholders, never history."""
    return pd.Timestamp(latest_plausible_date())


def latest_plausible_date() -> date:
    """:func:`latest_plausible_day` as a ``datetime.date`` (the server checks each request's day against it,
    without building a Timestamp). The day is the clock's whole days since 1970-01-01 (Unix time counts no leap
    seconds): ``datetime.now(UTC).date()``, without building the datetime."""
    return date.fromordinal(_EPOCH_ORDINAL + int(time.time() // 86_400) + 1)


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def check_unique_columns(names: list[str], source: str, table: str) -> None:
    """Raise :class:`DataError` when a column name repeats: which of the two to read would be a guess."""
    seen: set[str] = set()
    twice = list(dict.fromkeys(n for n in map(str, names) if n in seen or seen.add(n)))
    if twice:
        raise DataError(f"{source}: the {table} file has {len(twice)} column name(s) more than once: "
                        f"{', '.join(map(repr, twice[:5]))}; rename or drop the repeated columns")


def dialect(config: DataConfig) -> CsvDialect:
    """How the config says CSV files are written."""
    return CsvDialect(config.encoding, config.delimiter)


def header(path: str | Path, csv_dialect: CsvDialect | None = None) -> list[str]:
    """A CSV or Parquet file's column names as written in it (pandas renames a repeated CSV name).

    Raises:
        ValueError: an unsupported file type, or a CSV file whose header is not text in the dialect's encoding
            (see ``_io.header_line``).
    """
    if input_format(path) == "csv":
        csv_dialect = csv_dialect or CsvDialect()
        return header_names(header_line(path, csv_dialect), csv_dialect)
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
    missing = [c for c in required_columns(table, names, mapping) if mapping.get(c, c) not in names]
    if missing:
        found = "" if rows is None else f" in {rows:,} rows"
        also = " (an amount can also be 'quantity' x 'unit_price')" if "amount" in missing else ""
        raise DataError(
            f"{source}: required {table} column(s) {', '.join(map(repr, missing))} not found{found}{also}; "
            f"the file has columns: {', '.join(map(str, names[:20]))}. "
            + (_delimiter_hint(names, config.delimiter) or
               f"Map your names with data.columns.{table} in the config, e.g. {{{missing[0]}: YourColumn}}")
        )
    unknown = [u for u in getattr(config.exclude, table) if u not in names]
    if unknown:
        raise DataError(f"{source}: column {unknown[0]!r} (in data.exclude.{table}) not found; the file has columns: "
                        f"{', '.join(map(str, names[:20]))}")


def required_columns(table: str, names: list[str], mapping: dict[str, str]) -> tuple[str, ...]:
    """The contract columns a ``table`` file with columns ``names`` must have: transactions without an ``amount``
    column but with ``quantity`` and ``unit_price`` need no ``amount`` (it is their product)."""
    required = CONTRACT[table]["required"]
    if table == "transactions" and _amount_from_price(names, mapping):
        return tuple(c for c in required if c != "amount")
    return required


def _amount_from_price(names: list[str], mapping: dict[str, str]) -> bool:
    """Whether a transactions file's amount is to be computed as quantity x unit price."""
    return mapping.get("amount", "amount") not in names and all(
        mapping.get(c, c) in names for c in ("quantity", "unit_price"))


def _delimiter_hint(names: list[str], delimiter: str) -> str | None:
    """A hint when a file was read with the wrong field separator: one column whose name holds ``;``, a tab,
    ``|`` or ``,`` (the separator in YAML's spelling)."""
    if len(names) != 1:
        return None
    for sep, shown in ((";", "';'"), ("\t", '"\\t"'), ("|", "'|'"), (",", "','")):
        if sep in str(names[0]) and sep != delimiter:
            return (f"The header reads as a single column containing {shown}: the file looks separated by "
                    f"{shown}, not by {delimiter!r}; set data.delimiter: {shown} in the config (it applies to every "
                    "CSV file the command reads)")
    return None


def feature_columns(table: str, names: list[str], config: DataConfig) -> list[str]:
    """Of a ``table`` file's columns ``names``, the ones the features read (:data:`FEATURE_INPUTS`, through the
    column mapping) and any the mapping names, in file order; all of them when one of those or a required
    column is missing, so that the error lists every column the file has."""
    used = FEATURE_INPUTS[table]
    mapping = getattr(config.columns, table)
    required = required_columns(table, names, mapping)
    priced = ("quantity", "unit_price") if table == "transactions" and _amount_from_price(names, mapping) else ()
    wanted = ({mapping.get(c, c) for c in (*required, *(used or ()), *priced)} | set(mapping.values())
              | set(getattr(config.exclude, table)))
    if used is None or any(mapping.get(c, c) not in names for c in required) or \
            any(u not in names for u in mapping.values()):
        return list(names)
    return [n for n in names if n in wanted]


def _first_unique(values: pd.Series, n: int) -> tuple[str, ...]:
    """The first ``n`` distinct values, as text, in order of appearance (missing values left out); the first rows
    are looked at alone first, so a long column that repeats values is not hashed whole."""
    size = 64 * n
    while True:
        head = values.iloc[:size].dropna().astype(str).unique()
        if len(head) >= n or size >= len(values):
            return tuple(str(v) for v in head[:n])
        size *= 64


def _examples(values: pd.Series, n: int = 3) -> str:
    return ", ".join(map(repr, _first_unique(values, n)))


def _for_example(values: pd.Series) -> str:
    """``, e.g. 'x', 'y'`` for the first distinct values, nothing when none is given (empty cells)."""
    examples = _examples(values)
    return f", e.g. {examples}" if examples else ""


def rows_error(source: str, table: str, n_rows: int, groups: list[tuple[str, str, int, pd.Series, list[str]]]
               ) -> DataError:
    """The error for a ``table`` file's unusable rows, from one group per (column, reason): the column, the
    reason, how many rows, their values (the first few distinct ones are quoted) and where the first rows are."""
    n_bad = sum(n for _, _, n, _, _ in groups)
    lines = [f"  column {column!r}: {n:,} row(s) {reason}{_for_example(values)} (rows {', '.join(where[:3])})"
             for column, reason, n, values, where in groups]
    hint = ("no usable rows remain" if n_bad == n_rows
            else "fix the file, or set data.on_bad_rows: reject to set these rows aside in a rejects report")
    return DataError(f"{source}: {n_bad:,} of {n_rows:,} {table} row(s) cannot be used:\n" + "\n".join(lines)
                     + f"\n{hint}")


class _Checker:
    """Collects bad rows of one table (first reason wins) and turns them into an error or rejects. Only the
    flagged rows' positions, column, reason and value (as text) are kept."""

    def __init__(self, df: pd.DataFrame, table: str, source: str, first_row: int = 1) -> None:
        # Row numbers as the user counts them: data rows from ``first_row`` on, or the numbers a reader recorded.
        self._rows = df.pop(ROW_COLUMN).to_numpy() if ROW_COLUMN in df else None
        self._first = first_row
        long_rows = df.pop(EXTRA_FIELDS) if EXTRA_FIELDS in df else None
        self.df, self.table, self.source = df, table, source
        self._flagged = np.zeros(len(df), dtype=bool)  # rows with a reason already
        self._groups: list[tuple[np.ndarray, str, str, np.ndarray]] = []  # positions, column, reason, values
        self.ids: tuple[pa.Array, np.ndarray] | None = None  # the customer ids' distinct values and codes
        # Text date columns whose census to take (by contract name), and then their censuses: before a style is
        # known (ISO 8601) and in the style the block was read in (see _census_pass).
        self.dates: dict[str, tuple[DateCensus, DateCensus | None] | None] = {}
        self.spare_census = False  # True: no census in the style while most values fail ISO 8601 (see below)
        if long_rows is not None:  # first: their other reasons would come from fields read out of place
            self.flag(long_rows.notna(), "(whole row)", _LONG_ROW, long_rows)

    def rows(self, where: np.ndarray) -> np.ndarray:
        """The row numbers of the rows at positions ``where``."""
        return where + self._first if self._rows is None else self._rows[where].astype(np.int64)

    @classmethod
    def joined(cls, parts: list[_Checker]) -> _Checker:
        """One checker of a table checked a block at a time (``parts``, in row order, each block's rows already
        checked): its rows, flags, reasons, row numbers and customer id codes as if it had been checked whole."""
        if len(parts) == 1:
            return parts[0]
        starts = np.cumsum([0] + [len(p.df) for p in parts])
        check = cls(pd.DataFrame(), parts[0].table, parts[0].source)
        check.df = _concat_columns([p.df for p in parts])
        check._flagged = np.concatenate([p._flagged for p in parts])
        check._groups = [(w + s, c, r, v) for p, s in zip(parts, starts, strict=False) for w, c, r, v in p._groups]
        if any(p._rows is not None or p._first != s + 1 for p, s in zip(parts, starts, strict=False)):
            check._rows = np.concatenate([p.rows(np.arange(len(p.df))) for p in parts])
        if all(p.ids is not None for p in parts):
            check.ids = joint_codes([p.ids for p in parts])
        return check

    def flag(self, mask: pd.Series | np.ndarray, column: str, reason: str, raw: pd.Series | None = None) -> None:
        new = np.asarray(mask, dtype=bool) & ~self._flagged
        if new.any():
            self._flagged |= new
            where = np.flatnonzero(new)
            src = raw if raw is not None else self.df.get(column, None)
            values = (src.iloc[where].astype(str).to_numpy(dtype=object) if src is not None
                      else np.full(len(where), pd.NA, dtype=object))
            self._groups.append((where, column, reason, values))

    def _bad_rows(self) -> pd.DataFrame:
        """The flagged rows' column, reason and value, indexed by position, in row order."""
        where, column, reason, value = (np.concatenate(parts) for parts in zip(*(
            (w, np.full(len(w), c, dtype=object), np.full(len(w), r, dtype=object), v)
            for w, c, r, v in self._groups), strict=True))
        order = np.argsort(where, kind="stable")
        return pd.DataFrame({"column": column[order], "reason": reason[order], "value": value[order]},
                            index=where[order])

    def id_codes(self, frame: pd.DataFrame) -> IdCodes | None:
        """The :class:`IdCodes` of ``frame``, this table as :meth:`finish` returned it (its usable rows, whose
        ids are all present), with only the distinct ids still in it."""
        if self.ids is None or "customer_id" not in frame:
            return None
        values, codes = self.ids
        if len(frame) != len(codes):
            codes = codes[~self._flagged]
            present = np.bincount(codes, minlength=len(values)) > 0
            if not present.all():
                values, codes = values.filter(present), (np.cumsum(present, dtype=np.int32) - 1)[codes]
        return IdCodes(values, codes, frame["customer_id"].array)

    def encode_ids(self) -> None:
        """Encode the customer ids of a table whose blocks kept them as text (:func:`_check_block`): one
        dictionary encoding of the whole column (the blocks' columns joined without a copy), rather than one per
        block and then one of the blocks' distinct ids together."""
        if self.ids is None and "customer_id" in self.df and _is_text(self.df["customer_id"]):
            self.df["customer_id"], self.ids = _id_codes(self.df["customer_id"])

    def repeated_ids(self) -> np.ndarray:
        """Whether each row's customer id occurs in another row too (missing ids: False)."""
        if self.ids is None:
            return _repeated(self.df["customer_id"])
        values, codes = self.ids
        counts = np.bincount(codes[codes >= 0], minlength=len(values))
        return (codes >= 0) & (np.append(counts, 0)[codes] > 1)

    def finish(self, mode: str, part: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
        n_bad = int(self._flagged.sum())
        if n_bad == 0 or len(self.df) == 0:
            return self.df, pd.DataFrame(columns=REJECT_COLUMNS)
        bad = self._bad_rows()
        if mode == "raise" or (n_bad == len(self.df) and not part):
            groups = bad.groupby(["column", "reason"]).groups.items()
            raise rows_error(self.source, self.table, len(self.df), [
                (column, reason, len(idx), bad.loc[idx, "value"],
                 [str(r) for r in self.rows(np.asarray(list(idx)[:3]))])
                for (column, reason), idx in groups])
        rejects = pd.DataFrame(
            {
                "table": self.table,
                "source": self.source,
                "row": self.rows(bad.index.to_numpy()),
                "customer_id": self.df["customer_id"].iloc[bad.index].astype("object").to_numpy()
                if "customer_id" in self.df
                else pd.NA,
                "column": bad["column"].to_numpy(),
                "value": bad["value"].to_numpy(),
                "reason": bad["reason"].to_numpy(),
            }
        )
        if not part:  # a part's rows are counted with the whole input's
            logger.warning("%s: set aside %s of %s %s rows (see rejects)", self.source, f"{n_bad:,}", f"{len(self.df):,}",
                           self.table)
        return self.df.loc[~self._flagged].reset_index(drop=True), rejects


def text_cells(raw: pd.Series) -> pd.Series:
    """Cells as the checks read text: stripped, blank cells missing (they are missing values, not bad ones)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.chunked_array(raw.astype("string"))
    if not _plain_text(text):
        text = pc.utf8_trim_whitespace(text)
        text = pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, text.type), text)
    return pd.Series(pd.arrays.ArrowStringArray(text), index=raw.index, name=raw.name)


def _text_buffers(chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A text chunk's value bounds (start and end byte of each value, nulls left out) and its bytes, read from
    the Arrow buffers without a copy; None for a chunk of another type."""
    import pyarrow as pa

    if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
        return None
    data = chunk.buffers()[2]
    bounds = text_offsets(chunk)
    start, stop = bounds[:-1], bounds[1:]
    if chunk.null_count:
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        start, stop = start[valid], stop[valid]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    return start, stop, data


def _plain_text(text) -> bool:
    """Whether no value of an Arrow text column is empty or starts or ends with a byte other than printable
    ASCII: then no value has whitespace to strip (every whitespace character starts with a control byte, a
    space or a byte above 127) and :func:`text_cells` changes nothing. Two gathers over the buffers."""
    for chunk in text.chunks:
        found = _text_buffers(chunk)
        if found is None:
            return False
        start, stop, data = found
        if len(start) == 0:
            continue
        if (stop <= start).any():
            return False
        for edge in (take(data, start), take(data, stop - 1)):
            if ((edge <= 0x20) | (edge >= 0x7F)).any():
                return False
    return True


def _may_contain(text, byte: str) -> bool:
    """Whether a value of an Arrow text column may hold the ASCII character ``byte``: it is somewhere in the
    chunks' bytes (a superset: bytes of left-out slots count too)."""
    for chunk in text.chunks:
        found = _text_buffers(chunk)
        if found is None or (found[1].size and (found[2] == ord(byte)).any()):
            return True
    return False


def _each_distinct(raw: pd.Series, fn: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """``fn(raw)``; of a categorical, ``fn`` of its distinct values only, as a categorical again (values that
    ``fn`` makes equal share one category; a value it makes missing is missing)."""
    if not isinstance(raw.dtype, pd.CategoricalDtype):
        return fn(raw)
    import pyarrow as pa
    import pyarrow.compute as pc

    from churnguard._io import distinct_categories

    values = fn(pd.Series(raw.cat.categories))
    after, before = pa.array(values), pa.array(raw.cat.categories)
    if after.type == before.type and pc.all(pc.equal(after, before), skip_nulls=False).as_py() is True:
        if values.dtype == raw.cat.categories.dtype:
            return raw
        at, levels = raw.array.codes, pd.Index(values)  # the same values in another text type
    else:
        codes, levels = pd.factorize(values)
        at = np.append(codes, -1).astype(np.int32)[raw.array.codes]
    return pd.Series(pd.Categorical.from_codes(at, dtype=distinct_categories(levels), validate=False),
                     index=raw.index, name=raw.name, copy=False)  # the codes as they are, not copied


def _ids_text(raw: pd.Series) -> pd.Series:
    return _whole_numbers(raw) if _is_text(raw) else id_text(raw)


def _as_str(raw: pd.Series) -> pd.Series:
    return raw.astype("str")


def _lower(raw: pd.Series) -> pd.Series:
    return raw.str.lower()


def _is_text(raw: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw)


def id_text(raw: pd.Series) -> pd.Series:
    """Ids as text (:func:`text_cells`), an integer written as a float without its decimals (``12346.0``, or
    12346.0 in a float column, is ``12346``), so ids stored as floats join the same ids written as integers."""
    if pd.api.types.is_float_dtype(raw):
        whole = raw.notna() & (raw % 1 == 0) & (raw.abs() < 2**63)
        text = raw.astype("str")
        text[whole] = raw[whole].astype("int64").astype("str")
        return text
    if not _is_text(raw):
        return raw.astype("str")
    return _whole_numbers(text_cells(raw))


def category_codes(ids: pd.Series) -> tuple[pa.Array, np.ndarray]:
    """A categorical text column's distinct values that its rows use (an Arrow text array) and each row's
    position among them (int32; -1 for a missing value): its own codes, renumbered past unused categories."""
    import pyarrow as pa

    codes = ids.array.codes.astype(np.int32, copy=False)
    categories = ids.cat.categories
    if isinstance(categories.dtype, pd.StringDtype) and categories.dtype.storage == "pyarrow":  # as Arrow holds them
        distinct = pa.array(categories.array)
        distinct = (distinct.combine_chunks() if isinstance(distinct, pa.ChunkedArray) else distinct).cast(
            pa.large_string())
    else:
        distinct = pa.array(np.asarray(categories, dtype=object), type=pa.large_string())
    used = np.zeros(len(distinct) + 1, dtype=bool)  # the last: where a missing row's code (-1) marks, left out
    for first in range(0, len(codes), 1 << 20):  # a piece at a time: no temporary of every row
        used[codes[first : first + (1 << 20)]] = True
    used = used[:-1]
    if used.all():
        return distinct, codes
    return distinct.filter(used), np.where(codes >= 0, (np.cumsum(used, dtype=np.int32) - 1)[codes], -1).astype(
        np.int32)


def _id_codes(raw: pd.Series) -> tuple[pd.Series, tuple[pa.Array, np.ndarray]]:
    """Customer ids as :func:`id_text` reads them, with their distinct values and each row's code in them (-1:
    missing), from one dictionary encoding of the column: text is cleaned per distinct value, not per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not _is_text(raw):
        text = id_text(raw)
        return text, dictionary_codes(pa.chunked_array(text.astype("string")))
    text = raw.astype("string")
    values, codes = dictionary_codes(pa.chunked_array(text))
    clean = pa.chunked_array(_whole_numbers(text_cells(pd.Series(pd.arrays.ArrowStringArray(values)))).astype(
        "string")).combine_chunks() if len(values) else values
    if clean.null_count == 0 and pc.all(pc.equal(clean, values)).as_py() is not False:
        return text.astype("str"), (values, codes)
    values, remap = dictionary_codes(pa.chunked_array([clean]))
    codes = np.where(codes >= 0, remap[codes], -1).astype(np.int32)
    ids = values.take(pa.array(codes, mask=codes < 0))
    return pd.Series(pd.arrays.ArrowStringArray(ids), index=raw.index, name=raw.name).astype("str"), (values, codes)


def _whole_numbers(text: pd.Series) -> pd.Series:
    """Text ids (:func:`text_cells`) with an integer written as a float without its decimals, as ``str``."""
    import pyarrow as pa

    text = text.astype("str")
    if not _may_contain(pa.chunked_array(text), "."):  # one cheap pass spares the regex
        return text
    return text.str.replace(_WHOLE_NUMBER, r"\1", regex=True)


def dates_out_of_range(parsed: pd.Series) -> pd.Series:
    """Whether each parsed date lies outside the range of nanosecond timestamps (about 1678-2261)."""
    if parsed.dtype == "datetime64[ns]":  # held in nanoseconds: in range, or NaT (no date)
        return pd.Series(np.zeros(len(parsed), dtype=bool), index=parsed.index, copy=False)
    return (parsed < pd.Timestamp.min) | (parsed > pd.Timestamp.max)


def _parsed(raw: pd.Series, column: str, source: str, date_format: str | None) -> pd.Series:
    """A date column parsed at the resolution it comes in, naive UTC (mixed date styles raise; values that parse
    in no style come back as NaT)."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    elif date_format is not None:
        parsed = _to_datetime(text_cells(raw), date_format)
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
    day_first: int = 0  # values like 13/1/2024: a first number above 12 can only be a day
    month_first: int = 0  # values like 1/13/2024: a second number above 12 can only be a day


def date_census(text: pd.Series, fmt: str | None = None) -> tuple[pd.Series, DateCensus]:
    """Parse text dates (:func:`text_cells`) in the style ``fmt`` (None: ISO 8601, to decide the style) and
    summarise them: values present, parsed, the first one; with a style given, also how many others are dates in
    another style (``mixed``) and examples of both, for :func:`mixed_styles_error`. Unparsed values are NaT."""
    parsed = _to_datetime(text, fmt or "ISO8601")
    return parsed, _census_of(text, parsed, fmt)


def _census_of(text: pd.Series, parsed: pd.Series, fmt: str | None) -> DateCensus:
    """The :func:`date_census` of text dates ``text`` whose parse in the style ``fmt`` (None: ISO 8601) is
    ``parsed``."""
    present, ok = text.notna().to_numpy(), parsed.notna().to_numpy()
    first = str(text.iloc[int(np.argmax(present))]) if present.any() else None
    failing = present & ~ok
    if fmt is None:
        day_first, month_first = _day_month_proof(text[failing]) if failing.any() else (0, 0)
        return DateCensus(int(present.sum()), int(ok.sum()), first, day_first=day_first, month_first=month_first)
    failed = text[failing]
    other = pd.to_datetime(failed, format="mixed", errors="coerce", utc=True).notna()
    return DateCensus(int(present.sum()), int(ok.sum()), first, int(other.sum()),
                      _first_unique(text if ok.all() else text[ok], 2), _first_unique(failed[other], 3))


def _to_datetime(text: pd.Series, fmt: str) -> pd.Series:
    """Text dates (:func:`text_cells`) parsed in the style ``fmt`` as ``pandas.to_datetime`` parses them (UTC;
    values that parse in no way NaT). An ISO 8601 column whose values are all written alike and are all dates
    (:func:`_iso_fixed_width`) is parsed by Arrow instead, several times faster, to the same values."""
    parsed = _iso_fixed_width(text) if fmt == "ISO8601" else None
    return parsed if parsed is not None else pd.to_datetime(text, format=fmt, errors="coerce", utc=True)


_ISO_MARKS = {4: b"-", 7: b"-", 10: b" T", 13: b":", 16: b":", 19: b"."}  # by position: the characters allowed


def _iso_fixed_width(text: pd.Series) -> pd.Series | None:
    """:func:`_to_datetime` of an Arrow text column in ISO 8601 when every value has the same one of the shapes
    ``YYYY-MM-DD`` and ``YYYY-MM-DD hh:mm:ss`` (``T`` between allowed; a fraction of a second of 1-9 digits after a
    ``.``), parsed by Arrow's ISO 8601 parser, which reads every value of these shapes as pandas does and fails on
    any it cannot (a day that does not exist, an hour 24, a date beyond the nanosecond range, a letter for a
    digit); None otherwise (pandas then parses the column). The shape is checked on the text's bytes, without a
    copy. Older pyarrow (before 25) reads some of these values otherwise (years beyond the nanosecond range): None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found = None if int(pa.__version__.split(".")[0]) < 25 or text.isna().all() else _packed_text(text)
    if found is None:
        return None
    values, packed = found
    for start, stop, data in packed:
        width = int(stop[0] - start[0])
        if not (width in (10, 19) or 21 <= width <= 29) or ((stop - start) != width).any():
            return None
        cells = data.reshape(-1, width)
        for at, allowed in _ISO_MARKS.items():
            if at < width:
                wrong = cells[:, at] != allowed[0]
                if len(allowed) > 1:
                    wrong &= cells[:, at] != allowed[1]
                if wrong.any():
                    return None
    try:
        parsed = pc.cast(values, pa.timestamp("ns"))
    except pa.ArrowInvalid:
        return None
    return parsed.cast(pa.timestamp("ns", tz="UTC")).to_pandas().set_axis(text.index).rename(text.name)


def arrow_column(values: pd.Series) -> pa.ChunkedArray:
    """A column as an Arrow chunked array: an Arrow-backed column's own data (not copied). Converted from the
    column's ``array``, not the Series: Arrow's check of a Series for ``__arrow_array__`` looks the name up in
    its index, which builds the index's hash table (a million Python strings for a Series indexed by its ids)."""
    import pyarrow as pa

    held = pa.array(values.array)
    return held if isinstance(held, pa.ChunkedArray) else pa.chunked_array([held])


def _packed_text(values: pd.Series) -> tuple[pa.ChunkedArray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] | None:
    """An Arrow-backed text column's Arrow data and, per chunk with a value, each value's start and end byte and
    the values' bytes back to back (nulls left out; no copy); None for a column of another type, or when a
    chunk's values do not follow each other in its buffer (a slice of a larger array, say)."""
    if not (isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow"):
        return None
    held = arrow_column(values)
    packed = []
    for chunk in held.chunks:
        found = _text_buffers(chunk)
        if found is None:
            return None
        start, stop, data = found
        if not len(start):
            continue
        if (start[1:] != stop[:-1]).any():
            return None
        packed.append((start, stop, data[start[0] : stop[-1]]))
    return held, packed


_DECIMAL_BYTES = np.zeros(256, dtype=bool)
_DECIMAL_BYTES[np.frombuffer(b"0123456789.+-", dtype=np.uint8)] = True


def _numbers(raw: pd.Series) -> pd.Series:
    """A column's values as float64, as ``pandas.to_numeric(errors="coerce")`` reads text (NaN: missing or not a
    number). A text column of plain decimals of at most 15 digits (``-12.50``; no exponent, no space) is read by
    Arrow's cast instead: such a value has one nearest float, which both find."""
    fast = _decimals_by_arrow(raw)
    return fast if fast is not None else pd.to_numeric(raw, errors="coerce").astype("float64")


def _decimals_by_arrow(raw: pd.Series) -> pd.Series | None:
    """:func:`_numbers` of an Arrow text column of plain decimals by Arrow; None for any other column, or when a
    value does not parse. A negative zero (``-0``) is read as pandas reads it: 0 in a column of whole numbers
    (no value with a decimal point: pandas reads integers, of text with missing values as ``pd.NA`` too), else
    -0.0 as Arrow reads it; of text with missing values as NaN, pandas reads floats when a value is missing and
    the column is left to pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found = _packed_text(raw)
    if found is None:
        return None
    values, packed = found
    for start, stop, data in packed:
        if (stop - start).max() > 16 or not _DECIMAL_BYTES[data].all():
            return None
    try:
        numbers = pc.cast(values, pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        return None
    negative_zero = np.signbit(numbers) & (numbers == 0)
    if negative_zero.any() and not any((data == ord(".")).any() for _, _, data in packed):
        if raw.dtype.na_value is not pd.NA:
            return None
        numbers = np.where(negative_zero, 0.0, numbers)
    return pd.Series(numbers, index=raw.index, name=raw.name)


def merge_census(a: DateCensus, b: DateCensus) -> DateCensus:
    """The :func:`date_census` of two parts of a column together (``a`` before ``b``)."""
    return DateCensus(a.present + b.present, a.parsed + b.parsed, a.first if a.first is not None else b.first,
                      a.mixed + b.mixed, tuple(dict.fromkeys(a.ok + b.ok))[:2], tuple(dict.fromkeys(a.bad + b.bad))[:3],
                      a.day_first + b.day_first, a.month_first + b.month_first)


def _day_month_proof(text: pd.Series) -> tuple[int, int]:
    """Of text dates written ``N/N/YYYY`` (or with ``.`` or ``-``), how many have a first number above 12 (so
    the day comes first) and how many a second number above 12 (so the month comes first)."""
    if text.empty:
        return 0, 0
    import pyarrow as pa
    import pyarrow.compute as pc

    found = pc.extract_regex(pa.array(text.astype("object"), type=pa.large_string(), from_pandas=True),
                             r"^(?P<a>\d{1,2})[/.\-](?P<b>\d{1,2})[/.\-]\d{2,4}\b")
    first, second = (pc.cast(pc.struct_field(found, name), pa.int64()) for name in ("a", "b"))
    return (int(pc.sum(pc.greater(first, 12)).as_py() or 0), int(pc.sum(pc.greater(second, 12)).as_py() or 0))


def _day_month_swapped(fmt: str) -> str | None:
    """``fmt`` with its leading day and month swapped (``%m/%d/%Y`` <-> ``%d/%m/%Y``); None for another style."""
    head = (fmt[:2], fmt[3:5])
    if head not in (("%m", "%d"), ("%d", "%m")):
        return None
    return f"{head[1]}{fmt[2]}{head[0]}{fmt[5:]}"


def _day_month_order(census: DateCensus, fmt: str, source: str, column: str, say: Callable | None = None) -> str:
    """Of a day/month style ``fmt`` and its swap, the one the values prove (a number above 12 where only a day
    can be); when no value tells, ``fmt`` (pandas' guess, month first for ``1/2/2024``), with a warning saying
    which reading was taken and the format of the other (``say``: where the warning goes; the log by default)."""
    swapped = _day_month_swapped(fmt)
    if swapped is None or (census.day_first and census.month_first):  # mixed: the style check says so
        return fmt
    if census.day_first or census.month_first:
        return fmt if fmt.startswith("%d") == bool(census.day_first) else swapped
    taken, other = ("month", "days") if fmt.startswith("%m") else ("day", "months")
    (say or logger.warning)("%s: column %r: no date has a day above 12, so day and month cannot be told apart; "
                            "read %s first (%r, e.g. %r is %s). If %s come first, set data.date_format: %r", source,
                            column, taken, fmt, census.first, _reading(census.first, fmt), other, swapped)
    return fmt


def _reading(value: str | None, fmt: str) -> str:
    """``value`` read in ``fmt``, as a day people read (``4 March 2024``)."""
    when = pd.to_datetime(value, format=fmt, errors="coerce")
    return "no date" if pd.isna(when) else f"{when.day} {when:%B %Y}"


def date_style(census: DateCensus, source: str, column: str, say: Callable | None = None) -> str | None:
    """The style of a text date column, from the census of all its values before a style is known: None when
    there is nothing to decide (no values, or all ISO 8601); ISO 8601 when some values are; else the style pandas
    guesses from the first value (DataError when it guesses none), with day and month in the order the values
    prove (a number above 12), month first when none does (logged as a warning with the day-first format).
    Other values must be no date at all.
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
    return _day_month_order(census, fmt, source, column, say)


def mixed_styles_error(census: DateCensus, source: str, column: str, fmt: str) -> DataError:
    """The error for a column whose census in the style ``fmt`` found values that are dates in another style."""
    return DataError(
        f"{source}: column {column!r} mixes date styles: {census.mixed:,} of {census.present:,} rows "
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


@dataclass(frozen=True)
class RawTable:
    """A table's raw rows in the user's column names, whole or a block at a time: its column names, its number
    of rows (None: known once the blocks are read) and its blocks (frames in row order).

    A CSV file read in blocks also names its text date columns whose style is decided on the whole column
    (``census``, contract names in file order; its blocks can then be read again), and how to read the file
    whole instead (``read_whole``), for a file Arrow's reader cannot read as pandas does
    (``_io.CsvNotBlockwise``)."""

    names: list[str]
    rows: int | None
    blocks: Iterable[pd.DataFrame]
    census: tuple[str, ...] = ()
    read_whole: Callable[[], RawTable] | None = None

    @classmethod
    def whole(cls, df: pd.DataFrame) -> RawTable:
        return cls(list(df.columns), len(df), [df])


def _prepare(raw: RawTable, table: str, sources: dict[str, str], config: DataConfig, allow_empty: bool,
             date_styles: dict[str, dict[str, str]]) -> tuple[_Checker, dict[str, int]]:
    """Check the columns, then per block: leave out the rows of ``data.exclude``, rename to contract names and
    parse types (dates in the table's ``date_styles``, by contract name, when given; the styles of the columns
    of ``raw.census`` decided over all blocks, see :func:`_census_pass`); bad rows are flagged on the returned
    checker (the blocks' joined), returned with the rows left out per rule. ``sources``: names for messages, per
    table."""
    source = sources.get(table, table)
    mapping: dict[str, str] = getattr(config.columns, table)
    names = [c for c in raw.names if c not in (ROW_COLUMN, EXTRA_FIELDS)]
    check_columns(table, names, source, config, rows=None if raw.rows == 0 and allow_empty else raw.rows)
    priced = table == "transactions" and _amount_from_price(names, mapping)
    rules = getattr(config.exclude, table)
    ends = [0]  # the row after each block read

    def one(start: int, block: pd.DataFrame, styles: dict[str, str] | None, spare: bool
            ) -> tuple[_Checker, dict[str, int]]:
        ends.append(start + len(block))
        df, excluded = exclude_rows(block, rules, first_row=start + 1)
        check = _Checker(df.rename(columns={u: c for c, u in mapping.items()}).reset_index(drop=True), table, source,
                         first_row=start + 1)
        check.dates = dict.fromkeys(c for c in raw.census if c in check.df and c not in date_styles.get(table, {}))
        check.spare_census = spare
        _check_block(check, config, styles, priced)
        return check, excluded

    def checked(styles: dict[str, str] | None, spare: bool = False) -> tuple[list[_Checker], list[dict[str, int]]]:
        blocks = raw.blocks
        if isinstance(blocks, list):
            return tuple(zip(*[one(0, b, styles, spare) for b in blocks], strict=True))
        return tuple(zip(*_in_order(lambda start, block: one(start, block, styles, spare), _numbered(blocks)),
                         strict=True))

    from churnguard._io import CsvNotBlockwise

    try:
        parts, counts = _census_pass(checked, raw, source, date_styles.get(table))
    except CsvNotBlockwise:
        return _prepare(raw.read_whole(), table, sources, config, allow_empty, date_styles)  # as pandas reads it
    excluded = _joint_counts(counts, rules)
    if excluded and not allow_empty:  # a part's exclusions are counted with the whole input's
        logger.warning("%s", exclusion_note(source, table, raw.rows if raw.rows is not None else max(ends), excluded))
    check = _Checker.joined(list(parts))
    check.encode_ids()
    return check, excluded


def _census_pass(checked: Callable[..., tuple], raw: RawTable, source: str,
                 styles: dict[str, str] | None) -> tuple:
    """``checked(styles)`` (the checkers and exclusion counts of a table's blocks read with those date styles),
    with the styles of the text date columns of ``raw.census`` decided on all their values as
    :func:`date_style` decides a column read whole: first every block is read as ISO 8601 (what most files are),
    with the census of each column; when a column turns out to be in another style (or in ISO 8601 with a
    block whose values mostly are not), the blocks are read again in the styles decided. Then a column with
    values in another style than the one decided raises :func:`mixed_styles_error`, as a column read whole does
    (styles decided first, in column order)."""
    columns = [c for c in raw.census if c not in (styles or {})]
    if not columns:
        return checked(styles)
    first = {**(styles or {}), **dict.fromkeys(columns, "ISO8601")}
    parts, counts = checked(first, spare=True)
    decided, undecided, said = {}, None, {}
    for column in columns:
        census = reduce(merge_census, [p.dates[column][0] for p in parts if p.dates.get(column)],
                        DateCensus())
        try:
            said[column] = []
            decided[column] = date_style(census, source, column,
                                         lambda *message, to=said[column]: to.append(message)) or "ISO8601"
        except DataError as error:  # raised after the columns before it are checked, as read whole
            undecided = error
            break
    if any(fmt != "ISO8601" or any(p.dates.get(c) and p.dates[c][1] is None for p in parts)
           for c, fmt in decided.items()):
        parts, counts = checked({**first, **decided})
    for column, fmt in decided.items():  # each column's warning, then its mixed styles, as read whole
        for message in said[column]:
            logger.warning(*message)
        census = reduce(merge_census, [p.dates[column][1] for p in parts if p.dates.get(column)],
                        DateCensus())
        if census.mixed:
            raise mixed_styles_error(census, source, column, fmt)
    if undecided is not None:
        raise undecided
    return parts, counts


def _numbered(blocks: Iterable[pd.DataFrame]) -> Iterator[tuple[int, pd.DataFrame]]:
    """Each block with the number of rows before it."""
    start = 0
    for block in blocks:
        yield start, block
        start += len(block)


def _in_order(fn: Callable, items: Iterable[tuple], workers: int = 2) -> Iterator:
    """``fn(*item)`` of each item, on ``workers`` threads with at most ``workers`` items taken and not yet
    returned (Arrow, numpy and pandas' parsers let go of the GIL), in the order of the items."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="churnguard-check") as pool:
        pending: deque = deque()
        for item in items:
            if len(pending) == workers:
                yield pending.popleft().result()
            pending.append(pool.submit(fn, *item))
        while pending:
            yield pending.popleft().result()


def _check_block(check: _Checker, config: DataConfig, styles: dict[str, str] | None, priced: bool) -> None:
    """Check and parse the columns of one block (``check.df``, in contract names), flagging its bad rows; the
    checked columns are replaced by their parsed values, the others kept as they are."""
    df = check.df
    out = df.copy(deep=False)
    for column in df.columns:
        raw = df[column]
        if column not in _CHECKED:
            continue
        if _is_text(raw) or (isinstance(raw.dtype, pd.CategoricalDtype) and column in _TEXT):
            raw = _each_distinct(raw, text_cells)
        if column in _DATES:
            fmt = (styles or {}).get(column, config.date_format)
            out[column] = _checked_dates(check, raw, column, fmt, given=fmt is not None and fmt == config.date_format)
        elif column in _NUMERIC_RANGES:
            num = raw if raw.dtype == np.float64 else _numbers(raw)
            values, lo, hi = num.to_numpy(), *_NUMERIC_RANGES[column]  # float64: checked by numpy, not pandas
            missing = np.isnan(values)
            check.flag(raw.notna().to_numpy() & missing, column, "are not numeric", raw)
            check.flag(np.isinf(values), column, "are not finite numbers", raw)
            check.flag(~missing & ~((values >= lo) & (values <= hi)), column,
                       f"lie outside {_number(lo)}..{_number(hi)}", raw)
            out[column] = num
        elif column in _FLAGS:
            flags = _parse_bool(raw)
            check.flag(raw.notna() & flags.isna(), column, "are not true/false", raw)
            out[column] = flags
        elif column == "customer_id" and isinstance(raw.dtype, pd.CategoricalDtype):
            out[column] = _each_distinct(raw, _ids_text)
            check.ids = category_codes(out[column])
        elif column == "customer_id" and _is_text(df[column]):
            out[column] = raw  # cleaned; encoded once for the whole table (_Checker.encode_ids), not per block
        elif column == "customer_id":
            out[column], check.ids = _id_codes(df[column])
        elif column in _TEXT:
            out[column] = _each_distinct(raw, _ids_text if column in _IDS else _as_str)
        if column in _REQUIRED_VALUES:
            check.flag(out[column].isna(), column, "are empty", raw)
    if priced:
        out["amount"] = _priced_amount(out, check)
    check.df = out


def _checked_dates(check: _Checker, raw: pd.Series, column: str, date_format: str | None, given: bool = False
                   ) -> pd.Series:
    """A date column parsed (:func:`_parsed`), its dates out of range, unparseable or after today flagged; of a
    column in ``check.dates``, its censuses are kept there (:class:`DateCensus`: in ISO 8601 and in the style
    ``date_format`` it is read in). ``given``: ``date_format`` is the config's ``data.date_format``, which the
    reason of a date that does not parse then names (a file in another style fails whole)."""
    if column in check.dates and date_format is not None and not pd.api.types.is_datetime64_any_dtype(raw):
        text = text_cells(raw)
        parsed = _to_datetime(text, date_format)
        iso = _census_of(text, parsed, None) if date_format == "ISO8601" else DateCensus()
        # In another style: how many values that fail are dates in another way, parsed one by one (slow), so
        # not while most values fail ISO 8601 (the column may be in another style: it is read again then).
        check.dates[column] = (iso, _census_of(text, parsed, date_format)
                               if not check.spare_census or iso.present - iso.parsed <= iso.parsed else None)
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    else:
        parsed = _parsed(raw, column, check.source, date_format)
    far = dates_out_of_range(parsed)
    check.flag(far, column, "are dates outside the years 1678-2261", raw)
    parsed = (parsed.mask(far) if far.any() else parsed).astype("datetime64[ns]")
    if not pd.api.types.is_datetime64_any_dtype(raw):  # dates read as dates: a missing one was missing, one out of
        # range is flagged as such above (4.9M events' timestamps: 8.6 ms spared)
        check.flag(raw.notna() & parsed.isna(), column,  # the style the config gives is the first thing to check
                   f"are not dates in data.date_format {date_format!r}" if given else "have an unparseable date", raw)
    latest = latest_plausible_day()
    check.flag(parsed >= latest, column, f"are dated after today ({(latest - _DAY).date()})", raw)
    return parsed


def _concat_columns(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of ``frames`` (the same columns) one after another, joined a column at a time and each block's
    column let go once joined, so that only one column is held twice."""
    columns = {name: pd.concat([f.pop(name) for f in frames], ignore_index=True) for name in list(frames[0].columns)}
    return pd.DataFrame(columns, copy=False)


def _priced_amount(out: pd.DataFrame, check: _Checker) -> pd.Series:
    """Each line's amount as quantity x unit price (negative quantities: returns); lines without either are
    flagged, as is a product beyond :data:`MAX_MAGNITUDE`."""
    for column in ("quantity", "unit_price"):
        check.flag(out[column].isna(), column, "are empty (amount = quantity x unit_price)")
    amount = out["quantity"] * out["unit_price"]
    check.flag(amount.abs() > MAX_MAGNITUDE, "unit_price", f"give an amount beyond {_number(MAX_MAGNITUDE)}")
    return amount


def exclude_rows(df: pd.DataFrame, rules: dict[str, tuple[str, ...]], first_row: int = 1
                 ) -> tuple[pd.DataFrame, dict[str, int]]:
    """``df`` without the rows whose cell (:func:`text_cells`; ``""`` matches an empty cell) is one of a rule's
    values, and how many rows each rule left out (as ``column = value``, first matching rule counts; only rules
    that left out rows). Rows keep their number in the file (:data:`ROW_COLUMN`; ``df``'s first row is number
    ``first_row``) for later messages."""
    if not rules or df.empty:
        return df, {}
    if ROW_COLUMN not in df:
        df = df.assign(**{ROW_COLUMN: np.arange(first_row, first_row + len(df))})
    out = np.zeros(len(df), dtype=bool)
    counts: dict[str, int] = {}
    for column, values in rules.items():
        raw = df[column]
        text = id_text(raw).mask(raw.isna()) if pd.api.types.is_float_dtype(raw) else text_cells(raw)
        for value in values:
            hit = (text.isna() if value.strip() == "" else text.eq(value.strip()).fillna(False)).to_numpy(bool)
            new = hit & ~out
            if new.any():
                counts[_rule_name(column, value)] = int(new.sum())
                out |= new
    return df[~out].reset_index(drop=True), counts


def _rule_name(column: str, value: str) -> str:
    return f"{column} = {value!r}" if value.strip() else f"{column} empty"


def _joint_counts(parts: list[dict[str, int]], rules: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """The rows each rule left out of a table, from the counts of its blocks (:func:`exclude_rows`), in the
    order of the rules."""
    if len(parts) == 1:
        return parts[0]
    total = {name: sum(p.get(name, 0) for p in parts) for name in
             (_rule_name(column, value) for column, values in rules.items() for value in values)}
    return {name: n for name, n in total.items() if n}


def exclusion_note(source: str, table: str, n_rows: int, counts: dict[str, int]) -> str:
    """The sentence for rows left out by ``data.exclude``: how many of ``n_rows``, per rule."""
    rules = ", ".join(f"{rule}: {n:,}" for rule, n in counts.items())
    return (f"{source}: left out {sum(counts.values()):,} of {n_rows:,} {table} rows by data.exclude "
            f"({rules})")


def validate_tables(
    transactions: pd.DataFrame,
    tickets: pd.DataFrame | None = None,
    customers: pd.DataFrame | None = None,
    *,
    config: DataConfig,
    sources: dict[str, str] | None = None,
    allow_empty: bool = False,
    date_styles: dict[str, dict[str, str]] | None = None,
    events: pd.DataFrame | None = None,
    coded_ids: bool = False,
) -> Tables:
    """Validate in-memory tables against the contract and return them typed, with contract column names.

    Args:
        transactions, tickets, customers, events: raw frames in the user's column names.
        config: column mapping, date format and the bad-row policy.
        sources: names used in messages (file paths), per table; defaults to the table name.
        allow_empty: the tables are a part of the input (a customer partition): accept tables without rows or
            without usable rows, which only the whole input can judge.
        date_styles: per table, the style of date columns (by contract name) decided over the whole input;
            columns not named are read as without it.
        coded_ids: hold the customer ids as categoricals of the tables' one array of distinct ids (see
            :class:`IdCodes`), as the feature build and scoring read them, instead of as text.

    Raises:
        DataError: a whole table is unusable, or rows are bad and ``config.on_bad_rows`` is ``raise``.
    """
    raw = {name: RawTable.whole(df) for name, df in (("transactions", transactions), ("tickets", tickets),
                                                      ("customers", customers), ("events", events)) if df is not None}
    return _validate(raw, config, sources or {}, allow_empty, date_styles or {}, coded_ids=coded_ids)


def _validate(raw: dict[str, RawTable], config: DataConfig, sources: dict[str, str], allow_empty: bool,
              styles: dict[str, dict[str, str]], coded_ids: bool = False) -> Tables:
    """:func:`validate_tables` of raw tables whole or in blocks."""
    excluded, checks = {}, {}
    for name in filter(raw.__contains__, ("transactions", "customers", "tickets", "events")):
        checks[name], excluded[name] = _prepare(raw[name], name, sources, config, allow_empty, styles)
    if "customers" in checks:
        checks["customers"].flag(checks["customers"].repeated_ids(), "customer_id", "are duplicate customer ids")
    if "tickets" in checks:
        t = checks["tickets"]
        for col, reason in (("first_response_at", "are earlier than opened_at"), ("resolved_at", "are earlier than opened_at")):
            if col in t.df:
                t.flag(t.df[col] < t.df["opened_at"], col, reason)
    frames, ids, all_rejects = _finish_all(checks, config.on_bad_rows, allow_empty, coded_ids)
    non_empty = [r for r in all_rejects if not r.empty]
    rejects = pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame(columns=REJECT_COLUMNS)
    excluded = {t: counts for t, counts in excluded.items() if counts}
    tables = Tables(frames["transactions"], frames.get("tickets"), frames.get("customers"), rejects,
                    excluded=excluded, events=frames.get("events"),
                    ids={t: codes for t, codes in ids.items() if codes is not None})
    if not allow_empty:  # a part's ids are judged with the whole input's
        check_id_overlap(id_overlap(tables), {t: sources.get(t, t) for t in ("transactions", "customers")})
    return tables


def _finish_all(checks: dict[str, _Checker], mode: str, part: bool, coded: bool = False
                ) -> tuple[dict[str, pd.DataFrame], dict[str, IdCodes | None], list[pd.DataFrame]]:
    """Finish the checked tables (transactions and customers first: the others' rows must belong to their
    customers): the usable rows of each, their customer id codes (on one shared array of distinct ids when
    every table has codes, see :class:`IdCodes`), and the rejects. ``coded``: the customer ids of the tables on
    the shared array become categoricals of it (:func:`_coded_ids`)."""
    frames, ids, rejects = {}, {}, []
    for name in ("transactions", "customers"):
        if name in checks:
            frames[name], rej = checks[name].finish(mode, part)
            ids[name] = checks[name].id_codes(frames[name])
            rejects.append(rej)
    ids |= _shared(ids)
    known = [(frames[name]["customer_id"], ids[name]) for name in ("transactions", "customers") if name in frames]
    for name in ("tickets", "events"):
        if name in checks:
            frames[name], rej, ids[name] = _finish_owned(checks[name], known, mode, part)
            rejects.append(rej)
    return frames, _coded_ids(frames, ids) if coded else ids, rejects


def _shared(ids: dict[str, IdCodes | None]) -> dict[str, IdCodes]:
    """The transactions' and customers' :class:`IdCodes` on one array of their distinct ids (one dictionary
    encoding of the two tables' distinct ids), sorted, so that the order of the codes is the order of the ids;
    none when a table has no codes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not ids or any(codes is None for codes in ids.values()):
        return {}
    values, codes = joint_codes([(c.distinct, c.codes) for c in ids.values()])
    order = pc.sort_indices(values).to_numpy()
    rank = np.empty(len(values) + 1, dtype=np.int32)
    rank[order], rank[-1] = np.arange(len(values), dtype=np.int32), -1  # -1: a missing id stays -1
    values, codes = values.take(pa.array(order)), take_codes(rank, codes)
    bounds = np.cumsum([0] + [len(c.codes) for c in ids.values()])
    return {name: IdCodes(values, codes[a:b], c.column)
            for (name, c), a, b in zip(ids.items(), bounds[:-1], bounds[1:], strict=True)}


def _coded_ids(frames: dict[str, pd.DataFrame], ids: dict[str, IdCodes | None]) -> dict[str, IdCodes | None]:
    """Replace the customer id column of each table on the shared array of distinct ids (:func:`_shared`) by a
    categorical of its codes (one type for every table, its categories that array, in text order): the ids are
    held as integers, each distinct id's text once. The tables' :class:`IdCodes` then describe those columns."""
    shared = [c for c in ids.values() if c is not None]
    if not shared or any(c.distinct is not shared[0].distinct for c in shared):
        return ids
    from churnguard._io import distinct_categories

    text = frames["transactions"]["customer_id"].dtype
    text = text.categories.dtype if isinstance(text, pd.CategoricalDtype) else text
    dtype = distinct_categories(pd.Index(pd.array(shared[0].distinct, dtype=text)))
    out = {}
    for name, codes in ids.items():
        if codes is None:
            out[name] = None
            continue
        column = pd.Categorical.from_codes(codes.codes, dtype=dtype, validate=False)
        frames[name]["customer_id"] = pd.Series(column, index=frames[name].index, copy=False)
        out[name] = replace(codes, column=frames[name]["customer_id"].array)
    return out


def _finish_owned(check: _Checker, known: list[tuple[pd.Series, IdCodes | None]], mode: str, part: bool
                  ) -> tuple[pd.DataFrame, pd.DataFrame, IdCodes | None]:
    """Finish a table whose rows belong to customers of the transactions or customers table (tickets, events;
    ``known``: their validated ids, with their codes when they have them): rows of other customers are bad rows;
    event types are read in lower case. Also the table's :class:`IdCodes`: on the known tables' distinct ids
    when they share one array (each of this table's distinct ids looked up there once)."""
    ids = check.df["customer_id"]
    shared = None
    if check.ids is not None and all(codes is not None for _, codes in known):
        distinct = [codes.distinct for _, codes in known]
        if all(d is distinct[0] for d in distinct):
            import pyarrow.compute as pc

            shared = distinct[0]
            at = pc.index_in(check.ids[0], value_set=shared).to_numpy(zero_copy_only=False)  # float, NaN: absent
            at = np.append(np.where(np.isnan(at), -1, at), -1).astype(np.int32)  # the last for a missing id
            shared_codes = take_codes(at, check.ids[1])  # each row's position among the shared ids, -1: none
            found = shared_codes >= 0
        else:
            found = _codes_found(check.ids, distinct)
    else:
        found = _isin(ids, [values for values, _ in known])
    check.flag(ids.notna().to_numpy() & ~found, "customer_id",
               "belong to customers found in neither transactions nor customers")
    frame, rejects = check.finish(mode, part)
    if "event_type" in frame:
        frame["event_type"] = _each_distinct(frame["event_type"], _lower)
    if shared is None:
        return frame, rejects, check.id_codes(frame)
    codes = shared_codes if len(frame) == len(shared_codes) else shared_codes[~check._flagged]
    return frame, rejects, IdCodes(shared, codes, frame["customer_id"].array)


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
    import pyarrow.compute as pc

    if tables.customers is None:
        return IdOverlap()
    tx_ids, cu_ids = tables.id_codes("transactions"), tables.id_codes("customers")
    if tx_ids is not None and cu_ids is not None and tx_ids.distinct is cu_ids.distinct:  # integers only
        tx_in, cu_in = tx_ids.present(), cu_ids.present()
        return IdOverlap(int(tx_in.sum()), int(cu_in.sum()), int((tx_in & cu_in).sum()),
                         _first_missing(tx_ids, cu_in, 3), _first_missing(cu_ids, tx_in, 3))
    if tx_ids is not None and cu_ids is not None:
        tx_in_cu, cu_in_tx = (pc.is_in(a.distinct, value_set=b.distinct).to_numpy(zero_copy_only=False)
                              for a, b in ((tx_ids, cu_ids), (cu_ids, tx_ids)))
        return IdOverlap(len(tx_ids.distinct), len(cu_ids.distinct), int(tx_in_cu.sum()),
                         _first_missing(tx_ids, tx_in_cu, 3), _first_missing(cu_ids, cu_in_tx, 3))
    tx, cu = (_arrow_text(t["customer_id"]).unique().drop_null() for t in (tables.transactions, tables.customers))
    tx_in_cu, cu_in_tx = pc.is_in(tx, value_set=cu), pc.is_in(cu, value_set=tx)
    return IdOverlap(len(tx), len(cu), pc.sum(tx_in_cu).as_py() or 0, _first_arrow(tx.filter(pc.invert(tx_in_cu)), 3),
                     _first_arrow(cu.filter(pc.invert(cu_in_tx)), 3))


def _first_missing(ids: IdCodes, found: np.ndarray, n: int) -> tuple[str, ...]:
    """The first ``n`` distinct ids, in row order, of the rows whose id ``found`` (per distinct id) marks absent."""
    if found.all():
        return ()
    rows = np.flatnonzero(~found[ids.codes])
    picked: dict[int, None] = {}
    for first in range(0, len(rows), 4096):
        picked.update(dict.fromkeys(pd.unique(ids.codes[rows[first : first + 4096]]).tolist()))
        if len(picked) >= n:
            break
    return tuple(str(v) for v in ids.distinct.take(list(picked)[:n]).to_pylist())


def _codes_found(ids: tuple[pa.Array, np.ndarray], among: list[pa.Array]) -> np.ndarray:
    """Whether each row's id (``ids``: distinct values and codes, -1 missing) is one of the ids in ``among``."""
    import pyarrow.compute as pc

    values, codes = ids
    if len(values) == 0:
        return np.zeros(len(codes), dtype=bool)
    hit = np.zeros(len(values), dtype=bool)
    for other in among:
        hit |= pc.is_in(values, value_set=other, skip_nulls=True).to_numpy(zero_copy_only=False)
    return (codes >= 0) & hit[codes]


def _first_arrow(values, n: int) -> tuple[str, ...]:
    """The first ``n`` of distinct Arrow values, as text."""
    return tuple(str(v) for v in values.slice(0, n).to_pylist())


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


def _arrow_text(values: pd.Series):
    """A column as Arrow text (large strings), missing values null; Arrow-backed text is not copied."""
    import pyarrow as pa

    text = values if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow" else (
        values.astype("str"))
    return arrow_column(text).cast(pa.large_string())


def _isin(values: pd.Series, among: list[pd.Series]) -> np.ndarray:
    """Whether each (text) value occurs in any of ``among``; Arrow's hash lookup, several times faster than
    ``Series.isin`` on a million ids. Missing values count as not found."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values.dtype, pd.CategoricalDtype) and all(o.dtype is values.dtype for o in among):
        seen = np.zeros(len(values.cat.categories) + 1, dtype=bool)  # codes of one set of ids (coded_ids)
        for other in among:
            seen[other.cat.codes.to_numpy()] = True
        seen[-1] = False  # code -1: missing
        return seen[values.cat.codes.to_numpy()]
    if isinstance(values.dtype, pd.CategoricalDtype):  # each distinct value once
        return np.append(_isin(pd.Series(values.cat.categories), among), False)[values.cat.codes.to_numpy()]
    x = _arrow_text(values)
    found = np.zeros(len(values), dtype=bool)
    for other in sorted(among, key=len):  # the smaller table first; the larger only for the values still missing
        rest = np.flatnonzero(~found)
        if len(rest) == 0:
            break
        candidates = x if len(rest) == len(x) else x.take(pa.array(rest))
        hit = pc.is_in(candidates, value_set=_arrow_text(other).unique(), skip_nulls=True)
        found[rest] = hit.fill_null(False).to_numpy()
    return found


def _repeated(values: pd.Series) -> np.ndarray:
    """Whether each (text) value occurs more than once in ``values`` (missing values: False)."""
    import pyarrow.compute as pc

    x = _arrow_text(values)
    counts = pc.value_counts(x)
    twice = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    return pc.is_in(x, value_set=twice, skip_nulls=True).fill_null(False).to_numpy()


def _read(path: str | Path | DbSource, table: str, config: DataConfig, feature_inputs_only: bool = False
          ) -> pd.DataFrame:
    """A file's raw rows (``_io.read_rows``); a row longer than the header keeps only its customer id. A
    database table's rows (:func:`_read_db`). With ``feature_inputs_only`` only the columns the features read
    (:func:`feature_columns`)."""
    if isinstance(path, DbSource):
        return _read_db(path, table, config, feature_inputs_only)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {table} file not found")
    csv_dialect = dialect(config)
    try:
        names = header(path, csv_dialect)
        check_unique_columns(names, str(path), table)
        columns = feature_columns(table, names, config) if feature_inputs_only else None
        mapping = getattr(config.columns, table)
        return read_rows(path, columns, keep=(mapping.get("customer_id", "customer_id"),), dialect=csv_dialect,
                         categorical=tuple(mapping.get(c, c) for c in _CODED.get(table, ())),
                         few=tuple(mapping.get(c, c) for c in _FEW),
                         hashed=tuple(mapping.get(c, c) for c in _HASHED.get(table, ())))
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the {table} file is empty") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot read {table} file: it is not {config.encoding} text ({exc}); set "
                        "data.encoding to the file's encoding (e.g. latin-1 or cp1252)") from None
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
    events: str | Path | DbSource | None = None,
) -> Tables:
    """Read the files (or database tables, see ``churnguard.sources``) and validate them (see
    :func:`validate_tables`); ``feature_inputs_only``: read and check only the columns the features use
    (:func:`feature_columns`), as ``churnguard features`` and ``score`` do, so a bad value in another column
    sets no row aside, and hold the customer ids as integer codes (``validate_tables``' ``coded_ids``). A Parquet
    file is read and checked a block of rows at a time (:func:`_blocks`)."""
    paths = {"transactions": transactions, "tickets": tickets, "customers": customers, "events": events}
    raw = {name: _read_blocks(path, name, config, feature_inputs_only) for name, path in paths.items()
           if path is not None}
    return _validate(raw, config, {name: str(path) for name, path in paths.items() if path is not None}, False, {},
                     coded_ids=feature_inputs_only)


def _read_blocks(path: str | Path | DbSource, table: str, config: DataConfig, feature_inputs_only: bool
                 ) -> RawTable:
    """A table's raw rows (:func:`_read`); of a Parquet file whose rows can be checked apart from each other,
    a block at a time (:func:`_blocks`); of a CSV file, a block at a time too (:func:`_csv_table`)."""
    if isinstance(path, DbSource) or not Path(path).is_file():
        return RawTable.whole(_read(path, table, config, feature_inputs_only))
    if Path(path).name.lower().endswith((".csv", ".csv.gz")):
        return _csv_table(Path(path), table, config, feature_inputs_only)
    if Path(path).suffix.lower() not in (".parquet", ".pq"):
        return RawTable.whole(_read(path, table, config, feature_inputs_only))
    import pyarrow.parquet as pq

    try:
        names = header(path)
        check_unique_columns(names, str(path), table)
        schema, rows = pq.read_schema(path), pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError):
        return RawTable.whole(_read(path, table, config, feature_inputs_only))  # which reports the problem
    if not _separable(schema, table, config):
        return RawTable.whole(_read(path, table, config, feature_inputs_only))
    columns = feature_columns(table, names, config) if feature_inputs_only else None
    return RawTable(names if columns is None else columns, rows, _blocks(Path(path), table, columns))


def _csv_table(path: Path, table: str, config: DataConfig, feature_inputs_only: bool) -> RawTable:
    """A CSV file's raw rows a block at a time (``_io.csv_blocks``: what ``_io.csv_rows`` reads, in pieces), its
    text date columns' styles decided on the whole column (:func:`_census_pass`). Read whole (:func:`_read`),
    which reads or reports it as before, when its header or columns are not right, it has no rows, or its first
    row is longer than the header (pandas reads it as an index); and when Arrow's reader finds a row of another
    width than the header or text not in the encoding (``RawTable.read_whole``)."""
    def whole() -> RawTable:
        return RawTable.whole(_read(path, table, config, feature_inputs_only))

    csv_dialect = dialect(config)
    try:
        line = header_line(path, csv_dialect)
        written = header_names(line, csv_dialect)
        check_unique_columns(written, str(path), table)
        names = column_names(line, csv_dialect)  # as pandas names them (a blank name is "Unnamed: i")
        wanted = feature_columns(table, written, config) if feature_inputs_only else names
        columns = [n for n in names if n in wanted]
        check_columns(table, columns, str(path), config)
        if not 0 < first_record_width(lambda: open_bytes(path), csv_dialect) <= len(names):
            return whole()
    except (DataError, ValueError, OSError):
        return whole()  # which reports the problem
    contract = {u: c for c, u in getattr(config.columns, table).items()}
    census = () if config.date_format is not None else tuple(
        contract.get(c, c) for c in columns if contract.get(c, c) in _DATES)
    return RawTable(columns, None, _CsvBlocks(path, names, columns, csv_dialect), census, whole)


@dataclass(frozen=True)
class _CsvBlocks:
    """A CSV file's blocks (``_io.csv_blocks``), read anew each time they are iterated."""

    path: Path
    names: list[str]
    columns: list[str]
    dialect: CsvDialect

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return csv_blocks(self.path, self.names, self.columns, self.dialect, CSV_BLOCK_BYTES)


def _separable(schema: pa.Schema, table: str, config: DataConfig) -> bool:
    """Whether a Parquet file's rows can be checked a block at a time with the same outcome as all at once: no
    column holds dictionaries (their blocks would each have their own categories), no text column is read as
    categoricals (the events'), no column is a stored index, and every date column is a timestamp or has
    ``data.date_format`` (a style inferred from text dates is decided on the whole column)."""
    import pyarrow as pa

    contract = {u: c for c, u in getattr(config.columns, table).items()}
    index = [c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
    return table not in _CODED and not index and not any(pa.types.is_dictionary(f.type) for f in schema) and all(
        pa.types.is_timestamp(f.type) or config.date_format is not None
        for f in schema if contract.get(f.name, f.name) in _DATES)


def _blocks(path: Path, table: str, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    """The rows of a Parquet file a block at a time (``_io.parquet_blocks``), a read error as :class:`DataError`."""
    try:
        yield from parquet_blocks(path, columns, BLOCK_ROWS)
    except ValueError as exc:
        raise DataError(f"{path}: cannot read {table} file: {exc}") from None


SCORES_AS_CAMPAIGN = ("selected", "control_group", "action", "as_of")  # a scores file's columns read as a campaign


def scores_as_campaign(scores: pd.DataFrame) -> pd.DataFrame:
    """The customers a ``churnguard score`` run selected, as campaign rows in contract names: ``sent_at`` is the
    scores' ``as_of``, ``treated`` = not ``control_group``, ``cost`` the ``action_cost`` (when present)."""
    def flag(values: pd.Series) -> pd.Series:
        return _parse_bool(text_cells(values) if not pd.api.types.is_bool_dtype(values) else values)

    picked = scores[flag(scores["selected"]).fillna(False).to_numpy(dtype=bool)]
    out = pd.DataFrame({"customer_id": picked["customer_id"], "sent_at": picked["as_of"], "action": picked["action"],
                        "treated": ~flag(picked["control_group"]).astype("boolean")})
    return out.assign(cost=picked["action_cost"]) if "action_cost" in picked else out


def validate_campaigns(raw: pd.DataFrame, *, config: DataConfig, source: str = "campaigns") -> pd.DataFrame:
    """Validate a campaigns table (in the user's column names, mapped with ``data.columns.campaigns``) and return
    it typed, with contract names: ``sent_at`` a day, ``treated`` a flag, ``cost`` a number >= 0. A scores file
    (columns :data:`SCORES_AS_CAMPAIGN`, no ``sent_at``) is read as one campaign (:func:`scores_as_campaign`).

    Raises:
        DataError: a missing column, an empty table, or unusable rows (empty id or action, unparseable day,
            ``treated`` not true/false, negative cost, one customer twice in one campaign). With ``on_bad_rows:
            reject`` bad rows are dropped instead, with a warning naming how many.
    """
    names = [str(c) for c in raw.columns]
    mapped = config.columns.campaigns.get("sent_at", "sent_at")
    if mapped not in names and set(SCORES_AS_CAMPAIGN) <= set(names):
        raw, config = scores_as_campaign(raw), config.model_copy(update={"columns": config.columns.model_copy(
            update={"campaigns": {}})})
        if raw.empty:
            raise DataError(f"{source}: nobody was selected in these scores: there is no campaign to learn from")
    check, _ = _prepare(RawTable.whole(raw), "campaigns", {"campaigns": source}, config, False, {})
    keys = [c for c in ("campaign_id", "customer_id", "sent_at", "action") if c in check.df]
    twice = check.df.duplicated(keys, keep=False) & check.df["customer_id"].notna()
    check.flag(twice, "customer_id", "are one customer listed twice for one campaign, day and action")
    campaigns, _ = check.finish(config.on_bad_rows)
    return campaigns.assign(sent_at=campaigns["sent_at"].dt.normalize(),
                            treated=campaigns["treated"].astype(bool))


def load_campaigns(path: str | Path, *, config: DataConfig) -> pd.DataFrame:
    """Read a campaigns file (CSV or Parquet, or a scores file) and validate it (:func:`validate_campaigns`). A
    scores CSV file's cells are read as they were before ``score`` quoted them for spreadsheets (``'+44 20``)."""
    raw = _read(path, "campaigns", config)
    if (not isinstance(path, DbSource) and input_format(path) == "csv" and set(SCORES_AS_CAMPAIGN) <= set(raw.columns)
            and config.columns.campaigns.get("sent_at", "sent_at") not in raw.columns):
        raw = spreadsheet_restored(raw)
    return validate_campaigns(raw, config=config, source=str(path))
