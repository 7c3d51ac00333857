"""Tables in a database: PostgreSQL (through ADBC's libpq driver) and DuckDB files, named by URL.

* ``postgresql://USER@HOST:PORT/DB?table=orders`` (or ``?query=<URL-encoded SELECT>``; other query keys, such as
  ``sslmode`` or ``service``, go to libpq). The password comes from PostgreSQL's own places (``PGPASSWORD``,
  ``~/.pgpass``, a service file), never from the URL.
* ``duckdb:///path/to/file.duckdb?table=orders`` (or ``?query=``).

A URL is parsed once into a :class:`DbSource`. Reading (:func:`read_source`) fetches Arrow record batches of only
the columns asked for; writing (:func:`write_tables`) puts several tables in place in one transaction, each
first written under a new name and then renamed over the old one, so a reader sees the previous run or this
one, never part of it. The drivers are the ``db`` extra and are imported only when a database is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["DATABASE_ENV", "IF_EXISTS", "DatabaseError", "DbSource", "is_url", "parse_source", "read_part",
           "read_source", "resolve_inputs", "source_columns", "write_tables"]

SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "duckdb": "duckdb"}
IF_EXISTS = ("replace", "append")
DATABASE_ENV = "CHURNGUARD_DATABASE_URL"  # the database when the config names none
_EXTRA = "pip install 'churnguard[db]'"
BATCH_ROWS = 1_000_000  # rows per record batch DuckDB hands over (PostgreSQL's driver sizes its own)


class DatabaseError(ValueError):
    """A database cannot be reached or read, or a URL names no table; the message names the URL (without any
    password) and the table."""


@dataclass(frozen=True)
class DbSource:
    """A table (or the rows of a query) in a database.

    Attributes:
        kind: ``postgresql`` or ``duckdb``.
        target: what the driver connects to: the libpq URI without ``table``/``query``, or the DuckDB file.
        table: the table's name (``schema.name`` allowed), or None for a query.
        query: a SELECT statement, or None for a table.
    """

    kind: str
    target: str
    table: str | None = None
    query: str | None = None

    def __str__(self) -> str:
        """The URL as messages name it: the table (or query) included, never a password."""
        key = f"table={self.table}" if self.table is not None else f"query={self.query}"
        base = f"duckdb://{self.target}" if self.kind == "duckdb" else self.target
        return f"{base}{'&' if '?' in base else '?'}{key}"

    def with_table(self, table: str) -> DbSource:
        """The same database, another table."""
        return replace(self, table=table, query=None)


def is_url(value: object) -> bool:
    """Whether ``value`` is a database URL (a scheme of :data:`SCHEMES` followed by ``://``)."""
    return isinstance(value, str | DbSource) and str(value).split("://", 1)[0].lower() in SCHEMES and \
        "://" in str(value)


def parse_source(url: str, *, need_table: bool = True) -> DbSource:
    """Parse a database URL (see the module docstring).

    Raises:
        DatabaseError: an unknown scheme, a password in the URL, no or both of ``table`` and ``query``.
    """
    parts = urlsplit(url)
    kind = SCHEMES.get(parts.scheme.lower())
    if kind is None:
        raise DatabaseError(f"{url}: not a database URL; use postgresql://... or duckdb:///path/file.duckdb")
    if parts.password is not None:
        raise DatabaseError(f"{_without_password(parts)}: the URL holds a password; remove it and give it in "
                            "PGPASSWORD, ~/.pgpass or a service file (pg_service.conf)")
    params = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in params if k in ("table", "query")}
    rest = urlencode([(k, v) for k, v in params if k not in ("table", "query")])
    if kind == "duckdb":
        target = parts.netloc + parts.path
        if not target:
            raise DatabaseError(f"{url}: no DuckDB file; write duckdb:///path/to/file.duckdb")
    else:
        target = urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
    if len(ours) == 2 or (need_table and not ours):
        raise DatabaseError(f"{url}: name one table (?table=orders) or one query (?query=SELECT...)")
    return DbSource(kind, target, ours.get("table"), ours.get("query"))


def resolve_inputs(given: dict[str, Any], database: str | None, tables: dict[str, str]) -> dict[str, Any]:
    """The input of each table name in ``given`` (a path, a :class:`DbSource` or None), with the config's
    database (``data.database``, else ``$CHURNGUARD_DATABASE_URL``, as given in ``database``) filled in: an input
    left out that ``tables`` names is that table of the database; a bare name (no file of that name, no suffix)
    is a table of the database.

    Raises:
        DatabaseError: a table is named but no database is set, or the database URL is not one.
    """
    db = None if database is None else parse_source(database, need_table=False)
    out = {}
    for name, value in given.items():
        table = tables.get(name) if value is None else _bare_name(value)
        if table is not None and db is None:
            raise DatabaseError(f"the {name} table {table!r} is in no database: set data.database or "
                                f"{DATABASE_ENV} (postgresql://USER@HOST:PORT/DB or duckdb:///FILE)")
        out[name] = value if table is None else db.with_table(table)
    return out


def _bare_name(value: Any) -> str | None:
    """A path given as a table's name: no such file or directory, no suffix, no directory part."""
    if isinstance(value, DbSource):
        return None
    path = Path(value)
    return str(path) if not path.exists() and not path.suffix and path.name == str(path) else None


def _without_password(parts) -> str:
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _driver_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = []
    try:
        import adbc_driver_manager

        errors.append(adbc_driver_manager.Error)
    except ImportError:
        pass
    try:
        import duckdb

        errors.append(duckdb.Error)
    except ImportError:
        pass
    return tuple(errors)


@contextmanager
def connect(source: DbSource, *, write: bool = False) -> Iterator[Any]:
    """A DB-API connection (no autocommit) to the source's database, closed on exit.

    Raises:
        DatabaseError: the driver is not installed, or the database cannot be reached (wrong password, no
            server, no such DuckDB file).
    """
    try:
        if source.kind == "duckdb":
            import duckdb

            if not write and not Path(source.target).is_file():
                raise DatabaseError(f"{source}: DuckDB file {source.target} not found")
            conn = duckdb.connect(source.target, read_only=not write)
        else:
            import adbc_driver_postgresql.dbapi as pg

            conn = pg.connect(source.target)
    except ImportError:
        raise DatabaseError(f"{source}: reading {source.kind} needs the 'db' extra: {_EXTRA}") from None
    except _driver_errors() as exc:
        raise DatabaseError(f"{source}: cannot connect: {_first_line(exc)}") from None
    try:
        yield conn
    finally:
        conn.close()


def _first_line(exc: Exception) -> str:
    """A driver's message without its stack of detail lines."""
    text = str(exc).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


def quote_name(name: str) -> str:
    """A table name (``schema.name`` allowed) quoted as an SQL identifier."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _relation(source: DbSource) -> str:
    return quote_name(source.table) if source.table is not None else f"({source.query}) AS q"


@contextmanager
def _rows(source: DbSource, sql: str) -> Iterator[pa.RecordBatchReader]:
    """Connect, run ``sql`` and yield its rows as Arrow record batches (the cursor lives as long as the block)."""
    with connect(source) as conn:
        try:
            if source.kind == "duckdb":
                rel = conn.sql(sql)  # DuckDB 2 names it to_arrow_reader, 1.x fetch_arrow_reader
                reader = (getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader)(BATCH_ROWS)
                yield reader
                return
            cur = conn.cursor()
            cur.execute(sql)
            reader = cur.fetch_record_batch()
        except _driver_errors() as exc:
            what = f"table {source.table}" if source.table is not None else "the query"
            raise DatabaseError(f"{source}: cannot read {what}: {_first_line(exc)}") from None
        try:
            yield reader
        finally:
            cur.close()


def source_columns(source: DbSource) -> list[str]:
    """The column names of the source's table or query, in order (no row is read)."""
    with _rows(source, f"SELECT * FROM {_relation(source)} LIMIT 0") as reader:
        return list(reader.schema.names)


def read_source(source: DbSource, columns: list[str] | None = None) -> pd.DataFrame:
    """The source's rows (``columns``: only those), fetched as Arrow record batches. Decimals come as floats,
    dates as timestamps and dictionary-encoded text as text, as validation reads them in files."""
    return read_part(source, columns).to_pandas()


def read_part(source: DbSource, columns: list[str] | None = None, key: str = "", part: int = 0,
              parts: int = 1) -> pa.Table:
    """Part ``part`` of ``parts`` of the source's rows (``columns``: only those) as Arrow: the rows whose
    ``key`` column, as text, hashes to ``part`` (PostgreSQL's ``hashtext``, DuckDB's ``hash``; rows without a
    key in one part too). The predicate runs in the database, so a part reads only its own rows, and every row
    is in one part. Types as :func:`read_source` gives them."""
    import pyarrow as pa

    names = "*" if columns is None else ", ".join(quote_name(c) for c in columns)
    where = "" if parts == 1 else f" WHERE {_bucket(source.kind, quote_name(key), parts)} = {int(part)}"
    with _rows(source, f"SELECT {names} FROM {_relation(source)}{where}") as reader:
        schema = _plain_schema(reader.schema)
        try:
            return pa.Table.from_batches([_plain(batch) for batch in reader], schema=schema)
        except _driver_errors() as exc:
            raise DatabaseError(f"{source}: reading failed: {_first_line(exc)}") from None


def _bucket(kind: str, key: str, parts: int) -> str:
    """SQL for the part (0 to ``parts`` - 1) of a row from its key column as text (a NULL key: 0, or the part
    DuckDB's hash of NULL gives)."""
    if kind == "duckdb":
        return f"coalesce(hash(CAST({key} AS VARCHAR)) % {int(parts)}, 0)"
    return f"coalesce(abs(hashtext(CAST({key} AS text)) % {int(parts)}), 0)"


def _plain_type(t: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    if pa.types.is_decimal(t):
        return pa.float64()
    if pa.types.is_date(t):
        return pa.timestamp("ms")
    if pa.types.is_dictionary(t):
        return t.value_type
    return t


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([pa.field(f.name, _plain_type(f.type)) for f in schema])


def _plain(batch: pa.RecordBatch) -> pa.RecordBatch:
    schema = _plain_schema(batch.schema)
    return batch if schema.equals(batch.schema) else batch.cast(schema)


def write_tables(dest: DbSource, frames: dict[str, pd.DataFrame | None], *, if_exists: str = "replace") -> None:
    """Write each frame to the table named by its key, all in one transaction: on any error (or when the
    process dies first) every table stays as it was. ``replace``: each is written under a new name and renamed
    over the old one, and a table whose frame is None is dropped (so no table of an earlier run stays beside
    the new ones); ``append``: rows are added (the table is made when missing), a None frame changes nothing.

    Raises:
        DatabaseError: the database cannot be reached or written, e.g. appended rows do not fit the table.
    """
    if if_exists not in IF_EXISTS:
        raise DatabaseError(f"--if-exists must be replace or append, got {if_exists!r}")
    tables = {name: None if frame is None else _arrow(frame) for name, frame in frames.items()}
    with connect(dest, write=True) as conn:
        try:
            if dest.kind == "duckdb":
                conn.begin()
            for name, table in tables.items():
                _put(conn, dest.kind, name, table, if_exists)
            conn.commit()
        except _driver_errors() as exc:
            conn.rollback()
            raise DatabaseError(f"{replace(dest, table=next(iter(tables)))}: cannot write: "
                                f"{_first_line(exc)}") from None


def _put(conn: Any, kind: str, name: str, table: pa.Table | None, if_exists: str) -> None:
    """One table's part of :func:`write_tables` (inside its transaction)."""
    if table is None:
        if if_exists == "replace":
            _execute(conn, kind, f"DROP TABLE IF EXISTS {quote_name(name)}")
        return
    schema, _, base = name.rpartition(".")
    staged = f"{base}__new_{os.getpid()}"
    full = f"{schema}.{staged}" if schema else staged
    swap = [f"DROP TABLE IF EXISTS {quote_name(name)}", f"ALTER TABLE {quote_name(full)} RENAME TO {quote_name(base)}"]
    if kind == "duckdb":
        conn.register("churnguard_frame", table)
        if if_exists == "append":
            conn.execute(f"CREATE TABLE IF NOT EXISTS {quote_name(name)} AS SELECT * FROM churnguard_frame "
                         "LIMIT 0")
            conn.execute(f"INSERT INTO {quote_name(name)} BY NAME SELECT * FROM churnguard_frame")
        else:
            conn.execute(f"CREATE OR REPLACE TABLE {quote_name(full)} AS SELECT * FROM churnguard_frame")
            for sql in swap:
                conn.execute(sql)
        conn.unregister("churnguard_frame")
        return
    with conn.cursor() as cur:
        if if_exists == "append":
            cur.adbc_ingest(base, table, mode="create_append", db_schema_name=schema or None)
            return
        cur.execute(f"DROP TABLE IF EXISTS {quote_name(full)}")
        cur.adbc_ingest(staged, table, mode="create", db_schema_name=schema or None)
        for sql in swap:
            cur.execute(sql)


def _execute(conn: Any, kind: str, sql: str) -> None:
    if kind == "duckdb":
        conn.execute(sql)
        return
    with conn.cursor() as cur:
        cur.execute(sql)


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """A frame as Arrow with SQL-friendly types: text for text and categories (and columns with no values),
    dates as dates when every value is midnight and the column is named ``as_of``."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_dictionary(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
            t = pa.string()
        elif f.name == "as_of" and pa.types.is_timestamp(t):
            t = pa.date32()
        fields.append(pa.field(f.name, t))
    return table.cast(pa.schema(fields))
