"""The data behind the retention team's pages: a scores file loaded once, filtered, sorted and paged here.

:func:`load_run` reads the latest run of a scores file (``churnguard score``'s output, CSV or Parquet, or a
database table it wrote) into a
compact frame: text columns with few distinct values as categoricals, rows in ``customer_id`` order. A page
then costs a boolean mask over the codes, one cached sort order and a slice (:func:`page_rows`), so the
browser only ever receives one page. :func:`load_history` keeps each customer's purchases and tickets, when
the server was given the tables, in arrays sorted by customer for a binary search.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnguard._io.files import table_suffix
from churnguard._io.read import read_table
from churnguard._io.spreadsheet import spreadsheet_restored, spreadsheet_safe
from churnguard.lifecycle import LIFECYCLE_STAGES
from churnguard.reporting import monitoring
from churnguard.sources import DbSource, is_url, parse_source, read_source, source_columns

__all__ = ["FILTERS", "GROUPS", "PAGE_FILES", "PAGE_SIZE", "SORTS", "CustomerHistory", "ListQuery", "PageSources", "ScoresRun",
           "check_sources", "csv_chunks", "curve_columns", "load_history", "load_readout", "load_run",
           "movement", "page_rows", "parse_query"]

PAGE_SIZE = 50
FILTERS = ("risk_band", "lifecycle_stage", "value_tier", "action")  # the list's filters, each one value or all
GROUPS = {"selected": "selected for contact", "contacted": "selected and contacted",
          "control": "held out as control", "not_selected": "not selected"}
SORTS = ("churn_probability", "expected_value", "clv", "customer_id", *FILTERS)
NEEDED = ("customer_id", "as_of", "churn_probability", "risk_band", "lifecycle_stage", "value_tier", "action",
          "expected_value", "selected", "control_group")
_COUNTS = ("n_orders", "risk_rank", "value_rank")  # whole numbers of the scores, some of them empty
_BAND_ORDER = ("high", "medium", "low", *LIFECYCLE_STAGES)
_CURVE = re.compile(r"churn_probability_(\d+)d")


@dataclass(frozen=True)
class PageSources:
    """The tables the pages show: the latest scores, and optionally an earlier run, a campaign read-out
    (``churnguard campaign-readout``'s output) and the transactions and tickets. Each is a file or a database
    table (``churnguard.sources.DbSource``)."""

    scores: Path | DbSource
    previous: Path | DbSource | None = None
    readout: Path | DbSource | None = None
    transactions: Path | DbSource | None = None
    tickets: Path | DbSource | None = None

    @classmethod
    def parse(cls, values: Mapping[str, str | None]) -> PageSources:
        """From text: a database URL (``postgresql://...?table=NAME``, ``duckdb:///FILE?table=NAME``) or a
        file path, per field; empty means not given."""
        return cls(**{k: (parse_source(v) if is_url(v) else Path(v)) if v else None for k, v in values.items()})


PAGE_FILES = tuple(f.name for f in fields(PageSources))


@dataclass(frozen=True)
class ScoresRun:
    """One scoring run in memory.

    Attributes:
        frame: the rows of the run's latest ``as_of``, every column of the file, in ``customer_id`` order.
        as_of: that day; ``model_versions`` the versions that scored it.
        ids: ``customer_id`` as an index, for the customer page's look-up.
        previous: ``old_probability, old_band`` per customer id of the earlier run, or None.
        previous_as_of: the earlier run's day (None without one).
        orders: sort orders computed so far, by (column, descending); filled on first use.
    """

    frame: pd.DataFrame
    as_of: pd.Timestamp
    model_versions: tuple[str, ...]
    ids: pd.Index
    previous: pd.DataFrame | None = None
    previous_as_of: pd.Timestamp | None = None
    orders: dict[tuple[str, bool], np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def choices(self, column: str) -> list[str]:
        """The values of a filter column, in reading order (bands riskiest first, stages in lifecycle order)."""
        return list(self.frame[column].cat.categories)

    def counts(self) -> dict[str, Any]:
        """Customers in the run, per risk band, selected, contacted and held out as control."""
        f = self.frame
        bands = f["risk_band"].value_counts(sort=False)
        return {"customers": len(f), "bands": {str(k): int(v) for k, v in bands.items() if v},
                "selected": int(f["selected"].sum()), "control": int((f["selected"] & f["control_group"]).sum()),
                "contacted": int((f["selected"] & ~f["control_group"]).sum())}

    def order(self, column: str, descending: bool) -> np.ndarray:
        """Row positions sorted by ``column`` (missing values last, ties in ``customer_id`` order), cached."""
        key = (column, descending)
        if key not in self.orders:
            values = self.frame[column]
            if isinstance(values.dtype, pd.CategoricalDtype):
                codes = values.cat.codes.to_numpy().astype("float64")
                ranks = np.where(codes < 0, np.nan, codes)
            elif column == "customer_id":
                ranks = np.arange(len(values), dtype="float64")
            else:
                ranks = values.to_numpy(dtype="float64", na_value=np.nan)
            self.orders[key] = np.argsort(-ranks if descending else ranks, kind="stable").astype(np.int64)
        return self.orders[key]


@dataclass(frozen=True)
class ListQuery:
    """What the list shows: one value per filter column (absent: all), a selection group, sort and page."""

    filters: Mapping[str, str]
    group: str = ""
    sort: str = "churn_probability"
    descending: bool = True
    page: int = 1

    def params(self, **change: Any) -> dict[str, str]:
        """The query string's parameters of this list, with ``change`` applied (page, sort, ...)."""
        out = {**self.filters, "group": self.group, "sort": self.sort, "dir": "desc" if self.descending else "asc",
               "page": str(self.page)}
        out |= {k: str(v) for k, v in change.items()}
        return {k: v for k, v in out.items() if v}


def parse_query(params: Mapping[str, str]) -> ListQuery:
    """The list's query from URL parameters; unknown parameters are ignored, a bad sort or page falls back to
    the default (a page never fails on its address)."""
    filters = {c: params[c] for c in FILTERS if params.get(c)}
    group = params.get("group", "") if params.get("group", "") in GROUPS else ""
    sort = params.get("sort", "") if params.get("sort", "") in SORTS else "churn_probability"
    page = params.get("page", "1")
    return ListQuery(filters, group, sort, params.get("dir", "desc") != "asc",
                     max(1, int(page)) if page.isdigit() and len(page) < 10 else 1)


def _mask(run: ScoresRun, query: ListQuery) -> np.ndarray:
    f = run.frame
    keep = np.ones(len(f), dtype=bool)
    for column, value in query.filters.items():
        categories = f[column].cat.categories
        code = categories.get_loc(value) if value in categories else -2  # an unknown value matches nobody
        keep &= f[column].cat.codes.to_numpy() == code
    selected, control = f["selected"].to_numpy(), f["control_group"].to_numpy()
    groups = {"selected": selected, "contacted": selected & ~control, "control": selected & control,
              "not_selected": ~selected}
    return keep & groups[query.group] if query.group else keep


def matching_rows(run: ScoresRun, query: ListQuery) -> np.ndarray:
    """Positions of the rows the query matches, in its sort order."""
    order = run.order(query.sort, query.descending)
    return order[_mask(run, query)[order]]


def page_rows(run: ScoresRun, query: ListQuery, size: int = PAGE_SIZE) -> tuple[pd.DataFrame, int, int]:
    """The rows of the query's page, the number of rows matched and the number of pages (at least 1); a page
    past the end shows the last."""
    rows = matching_rows(run, query)
    pages = max(1, -(-len(rows) // size))
    start = (min(query.page, pages) - 1) * size
    return run.frame.iloc[rows[start : start + size]], len(rows), pages


def csv_chunks(run: ScoresRun, query: ListQuery, chunk: int = 20_000) -> Iterator[bytes]:
    """The rows the query matches, in its order, as CSV with the file's columns (header first)."""
    rows = matching_rows(run, query)
    yield run.frame.iloc[:0].to_csv(index=False).encode()
    for start in range(0, len(rows), chunk):  # text a spreadsheet would run as a formula quoted, as score quotes it
        part = spreadsheet_safe(run.frame.iloc[rows[start : start + chunk]])
        yield part.to_csv(index=False, header=False).encode()


def _read(path: Path | DbSource) -> pd.DataFrame:
    if isinstance(path, DbSource):
        frame = read_source(path)
    elif table_suffix(path) == ".csv":
        frame = spreadsheet_restored(pd.read_csv(  # the cells score quoted for spreadsheets ('+1) as they were (+1)
            path, dtype={"customer_id": str, "model_version": str, "as_of": str}, keep_default_na=False,
            na_values=[""]))
    else:
        frame = pd.read_parquet(path)
    for column in _COUNTS:  # whole numbers with empty cells, which pandas reads from a CSV file as floats (2042.0)
        if column in frame and pd.api.types.is_float_dtype(frame[column]) and (frame[column].dropna() % 1 == 0).all():
            frame[column] = frame[column].astype("Int64")
    return frame


def _is_text(values: pd.Series) -> bool:
    kind = values.dtype
    return not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind)
                or pd.api.types.is_datetime64_any_dtype(kind))


def _compact(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns with few distinct values as categoricals (the filter columns always, sorted in reading
    order), flags as booleans."""
    out = frame.copy()
    for column in ("selected", "control_group"):
        out[column] = monitoring.as_flags(out[column])
    for column in out.columns:
        values = out[column]
        if column in FILTERS or (column != "customer_id" and _is_text(values)
                                 and values.nunique() <= max(1000, len(values) // 4)):
            levels = sorted(values.dropna().astype(str).unique(),
                            key=lambda v: (_BAND_ORDER.index(v) if v in _BAND_ORDER else len(_BAND_ORDER), v))
            out[column] = pd.Categorical(values.astype("object").where(values.notna(), None), categories=levels)
    return out


def _latest(frame: pd.DataFrame, path: Path | DbSource) -> tuple[pd.DataFrame, pd.Timestamp]:
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a scores file of 'churnguard score': no column(s) {', '.join(missing)}")
    days = monitoring.scores_days(frame["as_of"], f"{path}:").dt.normalize()
    if len(frame) == 0 or days.isna().all():
        raise ValueError(f"{path}: the scores file holds no rows with an as_of day")
    latest = days.max()
    frame = frame[(days == latest).to_numpy()]
    if frame["customer_id"].duplicated().any():
        raise ValueError(f"{path}: a customer is listed twice in the run of {latest.date()}")
    return frame.sort_values("customer_id", kind="stable").reset_index(drop=True), latest


def load_run(path: Path | DbSource, previous: Path | DbSource | None = None) -> ScoresRun:
    """The latest run (the rows of the largest ``as_of``) of the scores file at ``path``, with the earlier run
    at ``previous`` for the risk movement.

    Raises:
        ValueError: a column of the scores is missing, no row has a day, or a customer is listed twice.
    """
    frame, as_of = _latest(_read(path), path)
    frame = _compact(frame)
    versions = tuple(sorted(frame["model_version"].dropna().astype(str).unique())) if "model_version" in frame else ()
    old, old_as_of = None, None
    if previous is not None:
        earlier, old_as_of = _latest(_read(previous), previous)
        old = pd.DataFrame({"old_probability": pd.to_numeric(earlier["churn_probability"]).to_numpy("float64"),
                            "old_band": earlier["risk_band"].astype("object").to_numpy()},
                           index=pd.Index(earlier["customer_id"].astype(str)))
    return ScoresRun(frame, as_of, versions, pd.Index(frame["customer_id"].astype(str)), old, old_as_of)


def movement(run: ScoresRun, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """How the customer's risk moved since the previous run: ``old_probability, old_band, delta`` (NaN when
    either run gave no probability) and ``seen`` (False: absent from the previous run); None without one."""
    if run.previous is None:
        return None
    cid = str(row["customer_id"])
    if cid not in run.previous.index:
        return {"seen": False}
    old = run.previous.loc[cid]
    new = row["churn_probability"]
    delta = new - old["old_probability"] if pd.notna(new) and pd.notna(old["old_probability"]) else np.nan
    return {"seen": True, "old_probability": float(old["old_probability"]), "old_band": str(old["old_band"]),
            "delta": float(delta)}


def curve_columns(frame: pd.DataFrame) -> list[tuple[int, str]]:
    """The churn curve's columns ``churn_probability_<N>d`` of a multi-horizon model, by horizon."""
    found = [(int(m.group(1)), c) for c in frame.columns if (m := _CURVE.fullmatch(str(c)))]
    return sorted(found)


@dataclass(frozen=True)
class CustomerHistory:
    """Purchases and tickets sorted by customer id (``*_ids`` for the binary search), or None when the server
    was not given that table."""

    purchase_ids: np.ndarray | None = None
    purchases: pd.DataFrame | None = None  # timestamp, amount
    ticket_ids: np.ndarray | None = None
    tickets: pd.DataFrame | None = None  # opened_at, first_response_at, resolved_at, channel, csat

    def of(self, customer_id: str) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        """The customer's purchases and tickets (empty frames when none; None when the table was not given)."""
        def rows(ids: np.ndarray | None, table: pd.DataFrame | None) -> pd.DataFrame | None:
            if ids is None or table is None:
                return None
            lo, hi = np.searchsorted(ids, customer_id, "left"), np.searchsorted(ids, customer_id, "right")
            return table.iloc[lo:hi]

        return rows(self.purchase_ids, self.purchases), rows(self.ticket_ids, self.tickets)


def _by_customer(table: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    ids = table["customer_id"].astype(str).to_numpy(dtype=object)
    order = np.argsort(ids, kind="stable")
    kept = table[[c for c in columns if c in table.columns]].iloc[order].reset_index(drop=True)
    return ids[order], kept


def load_history(transactions: Path | DbSource | None, tickets: Path | DbSource | None, data_config: Any,
                 customer_ids: pd.Index) -> CustomerHistory:
    """The purchases (``timestamp, amount``) and tickets of the customers ``customer_ids``, read and validated
    as scoring reads them (the model's data config), rows that cannot be used set aside; an empty history
    when neither file is given."""
    if transactions is None and tickets is None:
        return CustomerHistory()
    from churnguard.dataset import validate_tables

    names = data_config.columns
    tx = (_raw(transactions) if transactions is not None else
          pd.DataFrame({names.transactions.get(c, c): [] for c in ("customer_id", "timestamp", "amount")}))
    known = pd.DataFrame({names.customers.get("customer_id", "customer_id"): customer_ids.to_numpy()})
    tables = validate_tables(tx, None if tickets is None else _raw(tickets), known,
                             config=data_config.model_copy(update={"on_bad_rows": "reject"}), allow_empty=True,
                             sources={"transactions": str(transactions), "tickets": str(tickets)})
    out: dict[str, Any] = {}
    if transactions is not None:
        out["purchase_ids"], out["purchases"] = _by_customer(tables.transactions, ["timestamp", "amount"])
    if tables.tickets is not None:
        out["ticket_ids"], out["tickets"] = _by_customer(
            tables.tickets, ["opened_at", "first_response_at", "resolved_at", "channel", "csat"])
    return CustomerHistory(**out)


def _raw(source: Path | DbSource) -> pd.DataFrame:
    """A table's rows as validation reads them: a file's cells as text (``read_table``), a database's typed."""
    return read_source(source) if isinstance(source, DbSource) else read_table(source)


def load_readout(path: Path | DbSource | None) -> pd.DataFrame | None:
    """A campaign read-out table (``churnguard campaign-readout``'s output), or None."""
    return None if path is None else monitoring.load_readout(path)


def _columns(name: str, path: Path | DbSource) -> list[str]:
    if isinstance(path, DbSource):
        return source_columns(path)
    if not path.is_file():
        raise ValueError(f"--{name}: {path} is not a file")
    if table_suffix(path) == ".csv":
        try:
            return list(pd.read_csv(path, nrows=0).columns)
        except pd.errors.EmptyDataError:
            raise ValueError(f"--{name}: {path} is empty") from None
    import pyarrow.parquet as pq

    return pq.read_schema(path).names


def check_sources(sources: PageSources) -> None:
    """Fail fast, before the server starts: each file exists (each table can be read), is CSV or Parquet, and
    the scores have the columns the pages read.

    Raises:
        ValueError: a file is missing, of another type, or a scores file lacks a column.
        churnguard.sources.DatabaseError: a table cannot be read (unknown table, database unreachable).
    """
    for name, path in vars(sources).items():
        if path is None:
            continue
        columns = _columns(name, path)
        missing = [c for c in NEEDED if c not in columns] if name in ("scores", "previous") else []
        if missing:
            raise ValueError(f"--{name}: {path} is not a scores file of 'churnguard score': no column(s) "
                             f"{', '.join(missing)}")
