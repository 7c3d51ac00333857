"""Atomic writes: a crash mid-write never leaves a half file or a temp file behind; work directories of
ended processes are removed; outputs of one run are replaced together."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard._io.files import WORK_PREFIX, atomic_path, replaced_together, work_dir
from churnguard._io.write import appending_table, write_table


def _crash_while_writing(target, text):
    with atomic_path(target) as tmp:
        tmp.write_text(text)  # part of the output...
        raise RuntimeError("disk full")  # ...then the crash


def test_failure_mid_write_leaves_nothing(tmp_path):
    target = tmp_path / "scores.csv"
    with pytest.raises(RuntimeError, match="disk full"):
        _crash_while_writing(target, "customer_id,churn_probability\nc1,0.3\n")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_version(tmp_path):
    target = tmp_path / "scores.csv"
    write_table(pd.DataFrame({"a": [1]}), target)
    with pytest.raises(RuntimeError, match="disk full"):
        _crash_while_writing(target, "a\n2\n")
    assert pd.read_csv(target)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


@pytest.mark.parametrize("name", ["out.parquet", "out.csv"])
def test_appended_blocks_are_written_behind_the_caller_in_order(tmp_path, name):
    """Each block is written on a thread of its own while the caller makes the next: the file holds the blocks in
    the order given, and exists only once the block has ended."""
    blocks = [pd.DataFrame({"id": [f"c{i}-{j}" for j in range(1000)], "x": np.arange(1000.0) + i}) for i in range(6)]
    with appending_table(tmp_path / name) as append:
        for block in blocks:
            append(block)
        assert not (tmp_path / name).exists()
    read = pd.read_csv if name.endswith(".csv") else pd.read_parquet
    pd.testing.assert_frame_equal(read(tmp_path / name), pd.concat(blocks, ignore_index=True))


def _append_all(path, blocks, then=None):
    with appending_table(path) as append:
        for block in blocks:
            append(block)
        if then is not None:
            raise then


def test_a_block_that_cannot_be_written_stops_the_file_and_leaves_nothing(tmp_path):
    """A write that fails on its thread is raised to the caller (by its next append, or when the block ends), and
    nothing is left; when the caller fails while a block is being written, the write ends before the file goes."""
    import pyarrow as pa

    good = pd.DataFrame({"x": [1.0, 2.0]})
    bad = pd.DataFrame({"x": ["text", "more"]})  # another type than the file's column
    for blocks in ([good, bad], [good, bad, good]):
        with pytest.raises(pa.ArrowInvalid):
            _append_all(tmp_path / "o.parquet", blocks)
        assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="the caller's error"):
        _append_all(tmp_path / "o.parquet", [pd.DataFrame({"x": np.arange(2_000_000.0)})],
                    then=RuntimeError("the caller's error"))
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_normal_permissions(tmp_path):
    path = write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.parquet")
    assert path.stat().st_mode & 0o044  # readable by group/others as open() would make it under umask 022


def test_unsupported_extension(tmp_path):
    with pytest.raises(ValueError, match="use .csv or .parquet"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.xlsx")


def test_work_dirs_of_ended_processes_are_removed_by_the_next_run(tmp_path):
    host = socket.gethostname()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True).stdout.strip()
    left = tmp_path / f"{WORK_PREFIX}{host}-{ended}-abc"  # a process killed with SIGKILL leaves this behind
    (left / "sub").mkdir(parents=True)
    (left / "sub" / "transactions-0-0.arrow").write_bytes(b"customer data")
    running = tmp_path / f"{WORK_PREFIX}{host}-{os.getpid()}-def"  # a run still going (this one)
    elsewhere = tmp_path / f"{WORK_PREFIX}other-host-{ended}-ghi"  # its pid means nothing here
    running.mkdir()
    elsewhere.mkdir()
    with work_dir(tmp_path) as work:
        assert work.name.startswith(f"{WORK_PREFIX}{host}-{os.getpid()}-")
        (work / "piece.arrow").write_bytes(b"x")
        assert not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, elsewhere.name])


def test_outputs_are_replaced_together_and_a_stale_one_removed(tmp_path):
    scores, rejects = tmp_path / "scores.csv", tmp_path / "scores.rejects.csv"
    scores.write_text("old scores\n")
    rejects.write_text("old rejects\n")
    def crash() -> None:
        with replaced_together(scores, rejects) as (s, r):
            write_table(pd.DataFrame({"a": [1]}), s)
            write_table(pd.DataFrame({"b": [1]}), r)
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        crash()
    assert (scores.read_text(), rejects.read_text()) == ("old scores\n", "old rejects\n")  # nothing changed
    with replaced_together(scores, rejects) as (s, _r):  # a run without rejects
        write_table(pd.DataFrame({"a": [2]}), s)
        assert scores.read_text() == "old scores\n"  # not before the block ends
    assert pd.read_csv(scores)["a"].tolist() == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


def test_an_output_elsewhere_is_replaced_with_the_others(tmp_path):
    scores, rejects = tmp_path / "scores.csv", tmp_path / "elsewhere" / "rejects.csv"
    with replaced_together(scores, rejects) as (s, r):
        write_table(pd.DataFrame({"a": [1]}), s)
        write_table(pd.DataFrame({"b": [2]}), r)
    assert pd.read_csv(rejects)["b"].tolist() == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "scores.csv"]


# ---------------------------------------------------------------------------------------------------------
# Reading input tables

from churnguard._io.read import EXTRA_FIELDS, header_line, input_format, read_rows

HEADER = "customer_id,timestamp,amount,order_id\n"


def _rows(tmp_path, body: str, name: str = "tx.csv", **kw) -> pd.DataFrame:
    path = tmp_path / name
    path.write_text(HEADER + body)
    return read_rows(path, **kw)


@pytest.mark.parametrize(("body", "long_row"), [
    # pandas takes a longer first row as an index and shifts every column; with an empty last field it drops it
    ("c1,2024-01-01,1,234.50,o1\nc2,2024-01-02,5,o2\n", 0),
    ("c1,2024-01-01,1,234.50,\nc2,2024-01-02,5,o2\n", 0),
    # a middle row: pandas stops, or with usecols reads amount=1 and order_id=234.50
    ("c2,2024-01-02,5,o2\nc1,2024-01-01,1,234.50,o1\n", 1),
    ("c2,2024-01-02,5,o2\nc1,2024-01-01,1,234.50,\n", 1),
])
def test_a_row_with_more_fields_than_the_header_keeps_only_its_id_and_its_text(tmp_path, body, long_row):
    frame = _rows(tmp_path, body, keep=("customer_id",))
    assert len(frame) == 2
    row = frame.iloc[long_row]
    assert row["customer_id"] == "c1"
    assert row[["timestamp", "amount", "order_id"]].isna().all()  # nothing read out of place
    assert row[EXTRA_FIELDS].startswith("c1,2024-01-01,1,234.50,")
    other = frame.iloc[1 - long_row]
    assert other.tolist()[:4] == ["c2", "2024-01-02", "5", "o2"]
    assert pd.isna(other[EXTRA_FIELDS])


def test_rows_read_record_by_record_read_as_pandas_reads_them(tmp_path):
    """Quoted commas, short rows, blank lines and blank cells: the same values whichever way the file is read."""
    body = 'c1,2024-01-01,"1,5",o1\n\nc2,2024-01-02\nc3,2024-01-03,,o3\n'
    fast = _rows(tmp_path, body, columns=["customer_id", "amount"])
    slow = _rows(tmp_path, body + "c4,2024-01-04,1,234.50,o4\n", columns=["customer_id", "amount"])
    assert list(fast.columns) == ["customer_id", "amount", EXTRA_FIELDS]
    pd.testing.assert_frame_equal(fast, slow.iloc[:3])
    assert fast["amount"].tolist()[0] == "1,5"
    assert fast["amount"].isna().tolist() == [False, True, True]


def test_gzipped_csv_is_read_as_csv(tmp_path):
    import gzip

    path = tmp_path / "tx.csv.gz"
    path.write_bytes(gzip.compress((HEADER + "c1,2024-01-01,5,o1\n").encode()))
    assert input_format(path) == "csv"
    assert read_rows(path)["amount"].tolist() == ["5"]


def test_utf16_and_empty_files_are_named(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_bytes((HEADER + "c1,2024-01-01,5,o1\n").encode("utf-16"))
    with pytest.raises(ValueError, match="not UTF-8 text .*UTF-16"):
        header_line(path)
    path.write_bytes(b"")
    assert header_line(path) == b""


@pytest.mark.parametrize("name", ["x.xlsx", "x.txt", "x.gz"])
def test_unknown_input_suffixes_are_named(name):
    with pytest.raises(ValueError, match=f"unsupported file type '\\{name[1:]}'"):
        input_format(name)


def test_read_parquet_reads_as_pandas_does(tmp_path):
    """Same columns, index and types as ``pandas.read_parquet``: text, timestamps in their unit and zone, a
    named index, integers with missing values."""
    from churnguard._io.read import read_parquet

    df = pd.DataFrame({"s": pd.Series(["a", None], dtype="str"), "ts": pd.to_datetime(["2024-01-01", None]).as_unit("us"),
                       "tz": pd.to_datetime(["2024-01-01 10:00", None]).tz_localize("Europe/Paris"),
                       "i": pd.array([1, None], dtype="Int64")}, index=pd.Index(["x", "y"], name="k"))
    df.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_parquet(tmp_path / "t.parquet"), pd.read_parquet(tmp_path / "t.parquet"))
    pd.testing.assert_frame_equal(read_parquet(tmp_path / "t.parquet", ["ts"]),
                                  pd.read_parquet(tmp_path / "t.parquet", columns=["ts"]))


@pytest.mark.parametrize("index", [False, True])
def test_read_parquet_categoricals_over_row_groups_read_as_pandas_does(tmp_path, index):
    """Text columns read as categoricals a row group at a time (each group's own dictionary) hold the values
    pandas reads, missing ones included; the other columns are pandas' own, whatever their type, and a stored
    index is kept. A column of few values takes one byte a code until its values outgrow it (130 here)."""
    import numpy as np

    from churnguard._io.read import read_parquet

    n = 23
    df = pd.DataFrame({
        "id": pd.Series([f"c{i % 7}" if i % 5 else None for i in range(n)], dtype="str"),
        "ts": pd.to_datetime([f"2024-01-{1 + i % 28:02d}" if i % 4 else None for i in range(n)]).as_unit("ms"),
        "kind": pd.Series([["a", "b", None][i % 3] for i in range(n)], dtype="str"),
        "wide": pd.Series([f"v{i * 6 + j}" for i in range(n) for j in range(6)][:n], dtype="str"),
        "x": [float(i) if i % 6 else np.nan for i in range(n)],
        "f": np.arange(n, dtype=np.float32),
        "i": pd.array([i if i % 2 else None for i in range(n)], dtype="Int64"),
        "tz": pd.to_datetime(["2024-01-01 10:00"] * n).tz_localize("Europe/Paris"),
    }, index=pd.Index([f"r{i}" for i in range(n)], name="k") if index else None)
    wide = pd.DataFrame({"wide": pd.Series([f"w{i}" for i in range(130)], dtype="str")})
    path = tmp_path / "t.parquet"
    df.to_parquet(path, index=index, row_group_size=5)
    got = read_parquet(path, None, ("id", "kind", "wide"), ("kind", "wide"))
    expected = pd.read_parquet(path)
    pd.testing.assert_frame_equal(got.astype({c: "str" for c in ("id", "kind", "wide")}), expected)
    for name in ("id", "kind", "wide"):
        assert isinstance(got[name].dtype, pd.CategoricalDtype)
        assert got[name].cat.categories.is_unique
    assert got["kind"].array.codes.dtype == np.int8
    wide.to_parquet(path, index=False, row_group_size=40)
    got = read_parquet(path, None, ("wide",), ("wide",))["wide"]
    assert got.astype("str").tolist() == wide["wide"].tolist()
    assert got.array.codes.dtype == np.int16  # 130 values: pandas' smallest type for them
    pd.testing.assert_frame_equal(read_parquet(path, None, ("wide",), ("wide",)).iloc[:0].astype("str"),
                                  pd.read_parquet(path).iloc[:0])


def test_a_stop_whose_exit_a_library_swallowed_still_ends_the_command_before_its_outputs(tmp_path, monkeypatch):
    import signal

    from churnguard import _io

    monkeypatch.setattr(_io.files, "_STOPPED", [])
    target = tmp_path / "out.csv"
    target.write_text("previous")
    _io.files.raise_if_stopped()  # no stop asked: nothing happens
    with pytest.raises(SystemExit) as first:
        _io.files.stop_on_signal(signal.SIGTERM, None)
    assert first.value.code == 128 + signal.SIGTERM
    # that exit was swallowed (code that turns any error into a warning) and the command went on to its output
    with pytest.raises(SystemExit) as again, _io.files.replaced_together(target) as (staged,):
        staged.write_text("new")
    assert again.value.code == 128 + signal.SIGTERM
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no work directory left behind


def test_parquet_output_keeps_dictionaries_for_repeated_values_only(tmp_path):
    # a float column of few values and a text one are dictionary-encoded, a float column of distinct amounts
    # is not; the frame and its attrs read back as written
    import numpy as np
    import pyarrow.parquet as pq

    n = 2000
    df = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "orders_30d": np.arange(n) % 4 * 1.0,
                       "spend": np.arange(n) * 1.25 + 0.01})
    df.attrs = {"lifespan_years": 2.5}
    path = write_table(df, tmp_path / "f.parquet")
    column = {pq.ParquetFile(path).metadata.row_group(0).column(i).path_in_schema:
              pq.ParquetFile(path).metadata.row_group(0).column(i).encodings for i in range(3)}
    assert "RLE_DICTIONARY" in column["orders_30d"]
    assert "RLE_DICTIONARY" in column["customer_id"]
    assert "RLE_DICTIONARY" not in column["spend"]
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert back.attrs == df.attrs


def test_arrow_allocates_from_malloc_within_the_block_only():
    """``arrow_from_malloc``: Arrow's system pool (glibc's malloc) within the block, its pool as before after it,
    also when the block raises; arrays made within stay usable after it."""
    import pyarrow as pa

    from churnguard import _io

    if _io.cores._mallopt() is None:
        pytest.skip("glibc's malloc only")
    before = pa.default_memory_pool().backend_name
    with _io.cores.arrow_from_malloc():
        assert pa.default_memory_pool().backend_name == "system"
        made = pa.array(range(1000)).take(pa.array([3, 2, 1]))
    assert pa.default_memory_pool().backend_name == before != "system"
    assert made.to_pylist() == [3, 2, 1]
    with pytest.raises(ValueError, match="stop"), _io.cores.arrow_from_malloc():
        raise ValueError("stop")
    assert pa.default_memory_pool().backend_name == before


def test_overlapping_malloc_blocks_restore_the_pool_when_the_last_leaves():
    """Two builds on two threads: the second block enters while the first is open and leaves after it; the
    system pool holds until the last one leaves, then the pool from before the first comes back (a block that
    restored its own "before" would leave the system pool set, or switch it back under the other build)."""
    import pyarrow as pa

    from churnguard import _io

    if _io.cores._mallopt() is None:
        pytest.skip("glibc's malloc only")
    before = pa.default_memory_pool().backend_name
    first, second = _io.cores.arrow_from_malloc(), _io.cores.arrow_from_malloc()
    first.__enter__()
    second.__enter__()  # entered while the first is open: it sees the system pool as the one "before"
    first.__exit__(None, None, None)
    assert pa.default_memory_pool().backend_name == "system"  # the second build is still running
    second.__exit__(None, None, None)
    assert pa.default_memory_pool().backend_name == before != "system"


def test_malloc_is_asked_to_keep_freed_memory_in_one_arena(monkeypatch):
    """``keep_freed_memory``: glibc's mmap threshold at its largest (32 MB), 512 MB of freed heap kept, one arena
    for all threads (glibc's malloc.h numbers); nothing asked of another C library."""
    from churnguard import _io

    asked = []
    monkeypatch.setattr(_io.cores, "_mallopt", lambda: lambda option, value: asked.append((option, value)))
    _io.cores.keep_freed_memory()
    assert sorted(asked) == [(-8, 1), (-3, 32 << 20), (-1, 512 << 20)]
    monkeypatch.setattr(_io.cores, "_mallopt", lambda: None)
    _io.cores.keep_freed_memory()  # not glibc: nothing to ask, no error


def test_blas_threads_are_asked_to_sleep_soon_unless_the_environment_says_otherwise(monkeypatch):
    """``short_blas_spin``: OpenBLAS's threads wait 2**16 cycles for work before sleeping (its default 2**28 spins
    about 0.1 s of CPU as numpy loads); a timeout the user set in the environment is kept."""
    from churnguard import _io

    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    _io.cores.short_blas_spin()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "16"
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "24")
    _io.cores.short_blas_spin()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "24"


@pytest.mark.parametrize("kind", ["string", "large_string"])
def test_encode_text_gives_arrows_dictionary_encoding_of_fixed_and_varying_widths(kind):
    """``encode_text`` hashes values of one width as fixed-size bytes (of 1, 2, 4 or 8 bytes as integers): the
    indices and dictionary are Arrow's encoding of the text, for widths up to 8 bytes and over, slices (an
    offset into the bytes), missing or empty values, NUL bytes and varying widths."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from churnguard._io.codes import _fixed_width, encode_text

    ids = pa.array(["C0003", "C0001", "C0003", "C0004", "C0002", "C0001", "xyz"], type=getattr(pa, kind)())
    cases = {"fixed": (ids[:6], 5), "sliced": (ids.slice(2, 4), 5), "missing": (pa.array(["ab", None, "ab"]), None),
             "empty": (pa.array(["", ""]), None), "varying": (ids, None), "none": (ids.slice(0, 0), None),
             "multibyte": (pa.array(["ü1", "ab", "ü1"]), None), "same bytes": (pa.array(["üa", "abc", "üa"]), 3),
             "eight": (pa.array(["C0124771", "C0000001", "C0124771", "C9999999"]), 8),
             "nine": (pa.array(["C01247710", "C00000010", "C01247710"]), 9),
             "one": (pa.array(["b", "a", "b", "c"]), 1), "nul": (pa.array(["a\0", "\0a", "a\0", "\0\0"]), 2),
             "sliced eight": (pa.array(["C0000009", "C0124771", "C0000001", "C0124771"]).slice(1, 3), 8),
             "four": (pa.array(["ab\0c", "abc\0", "ab\0c", "\0abc"]), 4)}
    for name, (values, width) in cases.items():
        assert _fixed_width(values) == width, name
        want = pc.dictionary_encode(values)
        got = encode_text(values, getattr(pa, kind)())
        got.validate(full=True)
        assert got.indices.equals(want.indices), name
        assert got.dictionary.equals(want.dictionary.cast(getattr(pa, kind)())), name
        assert got.to_pylist() == values.to_pylist(), name


@settings(max_examples=60, deadline=None)
@given(width=st.integers(1, 12), data=st.data())
def test_encode_text_of_one_width_is_arrows_encoding(width, data):
    """Values of one width (NUL bytes and repeats among them) encode as Arrow encodes the text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from churnguard._io.codes import encode_text

    word = st.text(alphabet="\0ab9", min_size=width, max_size=width)
    values = pa.array(data.draw(st.lists(word, min_size=1, max_size=40)))
    want = pc.dictionary_encode(values)
    got = encode_text(values, pa.string())
    got.validate(full=True)
    assert got.indices.equals(want.indices)
    assert got.dictionary.equals(want.dictionary)


def test_text_codes_of_chunks_of_one_width_number_the_values_over_all_chunks():
    """Chunks of 8-byte values (hashed as integers) are encoded as one array: one dictionary, in order of first
    appearance over the chunks, and each chunk's indices into it."""
    import pyarrow as pa

    from churnguard._io.codes import text_codes

    chunks = pa.chunked_array([["C0000002", "C0000001"], ["C0000001", "C0000003", "C0000002"]],
                              type=pa.large_string())
    indices, values = text_codes(chunks)
    assert values.to_pylist() == ["C0000002", "C0000001", "C0000003"]
    assert values.type == pa.large_string()
    assert [i.to_pylist() for i in indices] == [[0, 1], [1, 2, 0]]


def test_take_is_numpys_gather_for_any_index_type_and_booleans():
    """``take`` gives ``values[indices]`` for indices of 8 to 64 bits and boolean values; ``take_codes`` reads a
    code of -1 from the table's last place (a missing value's), as numpy does."""
    from churnguard._io.codes import take, take_codes

    values = np.array([10, 11, 12, 13], dtype=np.int32)
    for kind in (np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint32):
        indices = np.array([3, 0, 0, 2, 1], dtype=kind)
        assert np.array_equal(take(values, indices), values[indices])
        assert take(values, indices).dtype == np.int32
    flags = np.array([True, False, True])
    got = take(flags, np.array([1, 2, 1, 0]))
    assert got.dtype == np.bool_
    assert got.tolist() == [False, True, False, True]
    codes = np.array([2, -1, 0, -1, 1], dtype=np.int32)
    assert take_codes(values, codes).tolist() == [12, 13, 10, 13, 11] == values[codes].tolist()
    assert take_codes(values, np.zeros(0, dtype=np.int32)).tolist() == []


def test_fixed_bytes_as_integers_keep_a_slices_offset():
    """A slice of fixed-size values seen as integers holds the slice's values, not the buffer's first ones."""
    import pyarrow as pa

    from churnguard._io.codes import _as_words, fixed_text

    whole = pa.array([b"aaaaaaaa", b"bbbbbbbb", b"cccccccc", b"bbbbbbbb"], type=pa.binary(8))
    words = _as_words(whole.slice(1, 2))
    assert words.type == pa.uint64()
    assert fixed_text(words).to_pylist() == ["bbbbbbbb", "cccccccc"]
    assert words.to_pylist() == _as_words(whole).to_pylist()[1:3]


def test_spreadsheet_quoting_marks_the_formula_cells_of_every_kind_of_text_column():
    """Cells sifted by their first character first, then matched: the same cells as the pattern matched on every
    cell, in Arrow text, object (numbers and missing values among the text), and categorical columns."""
    import re

    from churnguard._io.spreadsheet import _FORMULA, spreadsheet_restored, spreadsheet_safe

    values = ["=1+1", "+44 20", "-3", "@x", "\tx", "'=y", "plain", "a=b", None, "", "'", "-"]
    frame = pd.DataFrame({
        "arrow": pd.Series(values, dtype="str"),
        "objects": pd.Series([*values[:-2], -1.5, 7], dtype=object),  # numbers are not text: never quoted
        "category": pd.Series(values, dtype="category"),
        "number": [-1.0] * len(values),
    })
    safe = spreadsheet_safe(frame)
    for name in ("arrow", "objects", "category"):
        want = [f"'{v}" if isinstance(v, str) and re.match(_FORMULA, v) else v for v in frame[name]]
        assert [None if pd.isna(v) else v for v in safe[name]] == [None if pd.isna(v) else v for v in want], name
    assert safe["number"].equals(frame["number"])
    restored = spreadsheet_restored(safe)
    for name in frame.columns:
        assert [None if pd.isna(v) else v for v in restored[name].astype(object)] == \
            [None if pd.isna(v) else v for v in frame[name].astype(object)], name


def test_writing_below_a_file_names_the_file(tmp_path):
    """Every atomic write goes through work_dir: a folder that is a file is named, not mkdir's FileExistsError."""
    from churnguard._io.files import atomic_path

    (tmp_path / "tx.csv").write_text("a\n")
    with (pytest.raises(ValueError, match=r"tx\.csv/sub: .*tx\.csv is a file, not a directory"),
          atomic_path(tmp_path / "tx.csv" / "sub" / "out.csv")):
        pass
    assert (tmp_path / "tx.csv").read_text() == "a\n"
