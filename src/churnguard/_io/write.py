"""Writing tables: CSV or Parquet by extension, atomically, block by block behind the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from churnguard._io.files import atomic_path, table_suffix

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to CSV or Parquet (by extension), atomically; Parquet as :func:`appending_table` writes it."""
    path = Path(path)
    if table_suffix(path) != ".csv":
        with appending_table(path) as append:
            append(df)
        return path
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


_DICTIONARY_SAMPLE = 1 << 16  # rows whose distinct values decide a float column's Parquet encoding


def _dictionary_columns(table: pa.Table) -> list[str]:
    """The columns Parquet's dictionary encoding pays for: all but the floating-point ones whose first rows are
    mostly distinct (amounts, ratios, hours), whose dictionary would only be built to be dropped at the page
    limit (1M x 54 features: 1.16 s and 121 MB with dictionaries for all, 0.78 s and 115 MB so)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    head = table.slice(0, _DICTIONARY_SAMPLE)

    def few(column: pa.ChunkedArray) -> bool:  # at most 1 in 16 of the sample distinct
        # a first eighth with more distinct values than that decides it (it has no more than the whole)
        return all(pc.count_distinct(rows).as_py() * 16 <= len(head)
                   for rows in (column.slice(0, len(head) // 8), column))

    return [f.name for f in table.schema if not pa.types.is_floating(f.type) or few(head.column(f.name))]


@contextmanager
def appending_table(path: str | Path) -> Iterator[Callable[..., None]]:
    """Yield a function that appends a frame to ``path``, CSV for a ``.csv`` name and Parquet for any other (the
    first frame sets the header or schema, and in Parquet its ``attrs``, kept as ``DataFrame.to_parquet`` keeps
    them); the file is written atomically: all of it when the block ends, or nothing. An Arrow table made
    from a frame (``Table.from_pandas``, its schema's pandas metadata kept) is appended as that frame, without
    going through pandas, with ``attrs`` as given. Each frame is written on a thread of its own while the caller
    makes the next (the caller must not change a frame once appended); an error writing it is raised by the next
    append or at the end of the block, which waits for the last write."""
    import json
    from concurrent.futures import wait

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    csv = path.suffix.lower() == ".csv"
    writer, written, pending = None, False, None
    with atomic_path(path) as tmp, ExitStack() as closing:  # the Parquet writer is closed before the move
        def write(frame: pd.DataFrame | pa.Table, attrs: dict | None) -> None:
            nonlocal writer, written
            if csv:
                frame = frame.to_pandas() if isinstance(frame, pa.Table) else frame
                frame.to_csv(tmp, index=False, mode="a" if written else "w", header=not written)
            else:
                table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
                attrs = attrs if isinstance(frame, pa.Table) else frame.attrs
                if writer is None and attrs:
                    table = table.replace_schema_metadata({**table.schema.metadata,
                                                           "PANDAS_ATTRS": json.dumps(attrs)})
                writer = writer or closing.enter_context(pq.ParquetWriter(tmp, table.schema,
                                                                          use_dictionary=_dictionary_columns(table)))
                writer.write_table(table.cast(writer.schema))
            written = True

        def append(frame: pd.DataFrame | pa.Table, attrs: dict | None = None) -> None:
            nonlocal pending
            if pending is not None:
                pending.result()
            pending = behind.submit(write, frame, attrs)

        with ThreadPoolExecutor(1, thread_name_prefix="churnguard-write") as behind:
            try:
                yield append
            finally:  # the last write done before the writer is closed, whether the block ends well or not
                if pending is not None:
                    wait([pending])
            if pending is not None:
                pending.result()
