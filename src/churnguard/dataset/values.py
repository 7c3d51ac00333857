"""Cell values as the contract reads them: text cells and ids (an integer written as a float is the integer),
dates in one style per column (decided from the data, or ``data.date_format``), numbers and flags, and values as
dictionary codes; fast paths on Arrow buffers give the same values as pandas' parsers."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard._io.codes import take, take_codes, text_offsets
from churnguard.dataset.contract import _FALSE, _TRUE, _WHOLE_NUMBER, DataError, _first_unique

if TYPE_CHECKING:
    from collections.abc import Callable

    import pyarrow as pa


logger = logging.getLogger("churnguard.dataset")  # the stage's logger, whichever part logs

# What spreadsheets and databases write for "no value" (compared in lower case): a customer id written so is a
# missing id, a bad row as an empty one is, not a customer called "NULL".
NULL_IDS = ("null", "n/a", "nan", "none", "#n/a")


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
    """:func:`dictionary_codes` of some chunks, on this thread (``_io.codes.text_codes``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from churnguard._io.codes import text_codes

    indices, dictionary = text_codes(pa.chunked_array(chunks, type=pa.large_string()))
    if not indices:
        return dictionary, np.zeros(0, dtype=np.int32)
    codes = [pc.fill_null(c, -1).to_numpy(zero_copy_only=False) for c in indices]
    return dictionary, np.concatenate(codes).astype(np.int32, copy=False)


def text_cells(raw: pd.Series) -> pd.Series:
    """Cells as the checks read text: stripped, blank cells missing (they are missing values, not bad ones)."""
    return _series(_trimmed(_arrow_text(raw)), raw)


def without_null_ids(text: pd.Series) -> pd.Series:
    """Text cells (:func:`text_cells`) with the null markers (:data:`NULL_IDS`) missing: ``text`` itself when it
    holds none."""
    arrow = _arrow_text(text)
    kept = _unmarked(arrow)
    return text if kept is arrow else _series(kept, text)


def clean_ids(text: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """Customer ids as every reader reads them, files and ``POST /predict`` alike: blanks around an id trimmed, an
    empty id or a null marker (:data:`NULL_IDS`) missing, an integer written as a float without its decimals
    (``12346.0`` is ``12346``). On Arrow text, in a few compute calls, so one id costs little."""
    import pyarrow as pa

    if isinstance(text, pa.Array):
        text = pa.chunked_array([text])
    return _whole_number_text(_unmarked(_trimmed(text)))


def clean_id_list(ids: list[str]) -> list[str | None]:
    """:func:`clean_ids` of ids given one by one (``POST /predict``): an id none of its steps can change (printable
    ASCII at both ends, as :func:`_plain_text` asks, no ``.``, longer than any null marker) is kept without a
    round trip through Arrow, which costs a request tens of microseconds."""
    import pyarrow as pa

    longest = max(map(len, NULL_IDS))
    if all(len(i) > longest and "." not in i and "!" <= i[0] <= "~" and "!" <= i[-1] <= "~" for i in ids):
        return list(ids)
    return clean_ids(pa.array(ids, type=pa.string())).to_pylist()


def _arrow_text(raw: pd.Series):
    import pyarrow as pa

    return pa.chunked_array(raw.astype("string"))


def _series(text, like: pd.Series) -> pd.Series:
    return pd.Series(pd.arrays.ArrowStringArray(text), index=like.index, name=like.name)


def _trimmed(text):
    """:func:`text_cells` of Arrow text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not _plain_text(text):
        text = pc.utf8_trim_whitespace(text)
        text = pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, text.type), text)
    return text


def _unmarked(text):
    """Trimmed Arrow text (:func:`_trimmed`) with the null markers (:data:`NULL_IDS`, in any case) missing; only
    when a value is as short as a marker is any compared."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not _any_short(text, max(map(len, NULL_IDS))):
        return text
    marked = pc.is_in(pc.utf8_lower(text), value_set=pa.array(NULL_IDS, type=text.type))
    if not pc.any(marked).as_py():
        return text
    return pc.if_else(marked, pa.scalar(None, text.type), text)


def _any_short(text, size: int) -> bool:
    """Whether a value of an Arrow text column may be at most ``size`` bytes long (from the buffers' offsets)."""
    for chunk in text.chunks:
        found = _text_buffers(chunk)
        if found is None or (found[0].size and ((found[1] - found[0]) <= size).any()):
            return True
    return False


def _whole_number_text(text):
    """Arrow text with an integer written as a float without its decimals (``12346.0`` is ``12346``)."""
    import pyarrow.compute as pc

    if not _may_contain(text, "."):  # one cheap pass spares the regex
        return text
    return pc.replace_substring_regex(text, _WHOLE_NUMBER, r"\1")


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

    from churnguard._io.codes import distinct_categories

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
    return _series(clean_ids(_arrow_text(raw)), raw).astype("str")


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
    clean = clean_ids(values).combine_chunks() if len(values) else values
    if clean.null_count == 0 and pc.all(pc.equal(clean, values)).as_py() is not False:
        return text.astype("str"), (values, codes)
    values, remap = dictionary_codes(pa.chunked_array([clean]))
    codes = np.where(codes >= 0, remap[codes], -1).astype(np.int32)
    ids = values.take(pa.array(codes, mask=codes < 0))
    return pd.Series(pd.arrays.ArrowStringArray(ids), index=raw.index, name=raw.name).astype("str"), (values, codes)


def _whole_numbers(text: pd.Series) -> pd.Series:
    """Text ids (:func:`text_cells`, customer ids :func:`without_null_ids` too) with an integer written as a float
    without its decimals, as ``str``."""
    return _series(_whole_number_text(_arrow_text(text)), text).astype("str")


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
        f"{source}: column {column!r} mixes date styles: of {census.present:,} rows, {census.parsed:,} are in the "
        f"style {fmt!r} (e.g. {', '.join(map(repr, census.ok))}) and {census.mixed:,} in another "
        f"(e.g. {', '.join(map(repr, census.bad))}). "
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
