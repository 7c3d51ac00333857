"""The data contract: the tables and columns churnguard reads, the limits of their values, the checks of a
file's columns, and the errors and rejects that report a table that breaks it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from churnguard._io.files import table_suffix
from churnguard._io.read import CsvDialect, header_line, header_names, input_format
from churnguard._io.spreadsheet import spreadsheet_safe
from churnguard._io.write import write_table
from churnguard._text import plural

if TYPE_CHECKING:
    from churnguard.config import DataConfig


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
# Of them, those read as text and encoded by Arrow's hash (``_io.read.read_coded``), not as the file's dictionaries: the
# customer ids, too many distinct values a row group for its dictionary page.
_HASHED = {"events": ("customer_id",)}
_IDS = {"customer_id", "order_id", "ticket_id", "session_id", "action", "campaign_id"}
_FLAGS = {"loyalty_member", "treated"}
_WHOLE_NUMBER = r"^([+-]?\d+)\.0*$"  # an integer written as a float: 12346.0
_NULL_ID = "are empty: written as a null marker (NULL, N/A, NaN, None, #N/A)"  # a customer id (values.NULL_IDS)
_LONG_ROW = "have more fields than the header (a value with an unquoted comma, such as 1,234.50?)"
# Below this share of the smaller table's ids found in the other, transactions and customers describe different
# customers, or write the same ids differently; judged from this many ids of each table on.
MIN_SHARED_IDS = 0.05
MIN_IDS_JUDGED = 20
_CHECKED = _DATES | _REQUIRED_VALUES | set(_NUMERIC_RANGES) | _TEXT | _FLAGS
_DAY = pd.Timedelta(days=1)
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}
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
    CSV file, cells a spreadsheet would run as formulas are quoted (:func:`churnguard._io.spreadsheet.spreadsheet_safe`)."""
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
            (see ``_io.read.header_line``).
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
        found = "" if rows is None else f" in {plural(rows, 'row')}"
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
