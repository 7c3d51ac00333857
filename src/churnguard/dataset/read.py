"""Reading the tables from CSV, Parquet or a database, in blocks (:func:`load_tables`), and the campaigns of
``train-uplift`` (:func:`load_campaigns`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from churnguard._io.read import (
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
)
from churnguard._io.spreadsheet import spreadsheet_restored
from churnguard.dataset.contract import (
    _CODED,
    _DATES,
    _FEW,
    _HASHED,
    DataError,
    check_columns,
    check_unique_columns,
    dialect,
    feature_columns,
    header,
)
from churnguard.dataset.tables import Tables
from churnguard.dataset.validate import RawTable, _prepare, _validate
from churnguard.dataset.values import _parse_bool, text_cells
from churnguard.sources import DbSource

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow as pa

    from churnguard.config import DataConfig


BLOCK_ROWS = 2**20  # rows of a Parquet file read and checked at once (:func:`load_tables`)
CSV_BLOCK_BYTES = 2**26  # bytes of a CSV file read and checked at once (about 800,000 rows of transactions)


def _read(path: str | Path | DbSource, table: str, config: DataConfig, feature_inputs_only: bool = False
          ) -> pd.DataFrame:
    """A file's raw rows (``_io.read.read_rows``); a row longer than the header keeps only its customer id. A
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
    """A CSV file's raw rows a block at a time (``_io.read.csv_blocks``: what ``_io.read.csv_rows`` reads, in pieces), its
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
    """A CSV file's blocks (``_io.read.csv_blocks``), read anew each time they are iterated."""

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
    """The rows of a Parquet file a block at a time (``_io.read.parquet_blocks``), a read error as :class:`DataError`."""
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
