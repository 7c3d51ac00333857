"""Text as integer codes: Arrow's dictionary encoding of text columns, the codes of several dictionaries
joined, and gathers of codes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa


def encode_text(values: pa.Array, kind: pa.DataType) -> pa.DictionaryArray:
    """``pc.dictionary_encode`` of a text array (its indices int32), the dictionary's values of type ``kind``
    (``string`` or ``large_string``), by :func:`text_codes`."""
    import pyarrow as pa

    (indices,), dictionary = text_codes(values)
    return pa.DictionaryArray.from_arrays(indices, dictionary.cast(kind), safe=False)  # the encoding's indices


def text_codes(values: pa.Array | pa.ChunkedArray) -> tuple[list[pa.Array], pa.Array]:
    """``pc.dictionary_encode`` of text (an array, or a chunked array encoded as one): the indices (one array
    per chunk) and the distinct values in order of first occurrence. Where every value is there and has the
    same number of bytes (ids written to one width: the demo's customer and session ids, UUIDs), their bytes
    are encoded as values of that fixed size instead (:func:`fixed_bytes`), which Arrow hashes and compares
    without offsets: the same values, each the same bytes, so the same indices and values, given back as
    ``large_string`` (3.1M customer ids of 11 characters: 35 against 47 ms; a partition's 4.3M transaction
    ids of the 1M-customer world: 0.27-0.30 against 0.38-0.41 s). Otherwise the values keep the input's type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fixed = fixed_bytes(values)
    if fixed is not None and fixed.type.byte_width in _WORDS:  # the bytes as one unsigned integer each
        fixed = _as_words(fixed)
    coded = pc.dictionary_encode(values if fixed is None else fixed)
    chunks = [coded] if isinstance(coded, pa.Array) else coded.chunks  # a chunk's dictionary holds the earlier's
    if not chunks:
        return [], pa.array([], type=values.type)
    dictionary = chunks[-1].dictionary
    return [c.indices for c in chunks], dictionary if fixed is None else fixed_text(dictionary)


_WORDS = {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"}  # fixed widths Arrow hashes as integers


def _as_words(fixed: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Fixed-size binary values of 1, 2, 4 or 8 bytes as unsigned integers of the same bytes, without a copy:
    equal values are equal integers, which Arrow hashes faster (``encode_text`` of 3.1M customer ids of 8 bytes,
    three row groups of the 1M-customer world's events: 27.7 against 40.4 ms, best of 5)."""
    import pyarrow as pa

    kind = pa.type_for_alias(_WORDS[fixed.type.byte_width])
    if isinstance(fixed, pa.ChunkedArray):
        return pa.chunked_array([_as_words(c) for c in fixed.chunks], type=kind)
    return pa.Array.from_buffers(kind, len(fixed), [None, fixed.buffers()[1]], offset=fixed.offset)


def fixed_bytes(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray | None:
    """A text array's values as fixed-size binary values of the same bytes, without a copy, when every value
    is there and has the same number of bytes; else None. Of a chunked array, its chunks so, when all hold
    values of one width (an empty chunk has any; all empty: None)."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        widths = {_fixed_width(c) for c in values.chunks if len(c)}
        if len(widths) != 1 or None in widths:
            return None
        (width,) = widths
        return pa.chunked_array([_as_fixed(c, width) for c in values.chunks], type=pa.binary(width))
    width = _fixed_width(values)
    return None if width is None else _as_fixed(values, width)


def _as_fixed(values: pa.Array, width: int) -> pa.Array:
    """The bytes of a text array whose values all have ``width`` bytes, as fixed-size binary values."""
    import pyarrow as pa

    if not len(values):
        return pa.array([], type=pa.binary(width))
    return pa.Array.from_buffers(pa.binary(width), len(values), [None, values.buffers()[2].slice(
        int(text_offsets(values)[0]), width * len(values))])


def fixed_text(values: pa.Array) -> pa.Array:
    """Fixed-size binary values (:func:`fixed_bytes`' type, or :func:`_as_words`') as the ``large_string``
    values of the same bytes."""
    import numpy as np
    import pyarrow as pa

    width = values.type.byte_width
    offsets = np.arange(len(values) + 1, dtype=np.int64) * width  # one value after another
    data = values.buffers()[1].slice(values.offset * width, width * len(values))
    return pa.Array.from_buffers(pa.large_string(), len(values), [None, pa.py_buffer(offsets), data])


def text_offsets(values: pa.Array) -> np.ndarray:
    """A text (or binary) array's offsets, ``len(values) + 1`` of them, read from its buffer without a copy
    (int64 for the large types, else int32)."""
    import numpy as np
    import pyarrow as pa

    width = np.int64 if pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type) else np.int32
    if not len(values):
        return np.zeros(1, dtype=width)
    return np.frombuffer(values.buffers()[1], dtype=width, count=len(values) + 1,
                         offset=values.offset * np.dtype(width).itemsize)


def _fixed_width(values: pa.Array) -> int | None:
    """The number of bytes of every value of a text array when all have the same number (more than none) and
    none is missing; else None."""
    import numpy as np

    if not len(values) or values.null_count:
        return None
    offsets = text_offsets(values)
    width = int(offsets[1] - offsets[0])
    if width <= 0 or int(offsets[-1] - offsets[0]) != width * len(values):
        return None
    return width if bool((np.diff(offsets) == width).all()) else None


def dictionary_offset(seen: list[tuple[pa.Array, int]], dictionary: pa.Array, everyone: bool) -> int:
    """Where ``dictionary``'s values start among the distinct dictionaries ``seen`` so far (each with its
    offset), appended to them unless equal to the last one (``everyone``: to any one)."""
    for known, offset in (seen if everyone else seen[-1:]):
        if len(known) == len(dictionary) and known.equals(dictionary):
            return offset
    offset = seen[-1][1] + len(seen[-1][0]) if seen else 0
    seen.append((dictionary, offset))
    return offset


def _held_indices(indices: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """A dictionary chunk's indices straight from their buffer (a null's slot holds any number) and, when it
    has nulls, its validity as 0/1 bytes."""
    import numpy as np

    width = np.dtype(indices.type.to_pandas_dtype())
    held = np.frombuffer(indices.buffers()[1], dtype=width, count=len(indices), offset=indices.offset * width.itemsize)
    if not indices.null_count:
        return held, None
    bits = np.frombuffer(indices.buffers()[0], dtype=np.uint8)
    return held, np.unpackbits(bits, count=indices.offset + len(indices), bitorder="little")[indices.offset :]


def put_codes(indices: pa.Array, offset: int, out: np.ndarray) -> None:
    """Write a dictionary chunk's indices plus ``offset`` into ``out`` (-1 where null), straight from the
    indices' buffer."""
    import numpy as np

    held, valid = _held_indices(indices)
    if valid is None:
        np.add(held, offset, out=out, casting="unsafe")
        return
    # (index + offset + 1) * valid - 1 is -1 at a null, without a masked write.
    shifted = held + (offset + 1)  # a null's number may overflow: it is multiplied by 0
    shifted *= valid
    np.subtract(shifted, 1, out=out, casting="unsafe")


def joint_categorical(codes: np.ndarray, dictionaries: list[pa.Array], spans: list[tuple[int, int, int]]
                       ) -> pd.Categorical:
    """One categorical of codes into several dictionaries (``spans``: from each first row on, the codes number
    the values of ``dictionaries`` one after another from position ``lo`` to ``hi``; -1 null): the dictionaries'
    values are encoded together, in order of first appearance, and each group's codes mapped onto them in place
    (unless they are already those positions)."""
    import numpy as np
    import pandas as pd

    at, levels = joint_levels(dictionaries)
    if len(levels) > np.iinfo(codes.dtype).max:
        codes = codes.astype(np.int32)
    for (row, lo, hi), stop in zip(spans, [r for r, _, _ in spans[1:]] + [len(codes)], strict=True):
        if not np.array_equal(at[lo:hi], np.arange(hi - lo)):  # a small map per group: it stays in cache
            codes[row:stop] = np.append(at[lo:hi], np.int32(-1)).astype(codes.dtype)[codes[row:stop]]
    return pd.Categorical.from_codes(codes, dtype=distinct_categories(levels), validate=False)


def joint_levels(dictionaries: list[pa.Array]) -> tuple[np.ndarray, pd.Index]:
    """The values of text ``dictionaries`` encoded together, in order of first appearance: each value's
    position among the distinct ones (int32, the dictionaries one after another; -1: null) and the distinct
    values (an Arrow-backed text index)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    # One array, not a chunked one: combining a dictionary-encoded chunked array is not implemented in every
    # pyarrow the project supports.
    joint = encode_text(pa.concat_arrays([d.cast(pa.large_string()) for d in dictionaries]) if dictionaries
                        else pa.array([], type=pa.large_string()), pa.large_string())
    at = pc.fill_null(joint.indices, -1).to_numpy().astype(np.int32)
    return at, pd.Index(pd.array(joint.dictionary, dtype=pd.StringDtype("pyarrow", na_value=np.nan)))


def category_code_type(levels: int) -> np.dtype:
    """The integer type pandas holds the codes of a categorical of ``levels`` categories in (it converts others):
    also the indices of a split piece's dictionary of ``levels`` values (``engines.partitions``)."""
    import numpy as np

    return np.dtype(np.int8 if levels < 127 else np.int16 if levels < 32767 else np.int32)


def put_mapped_codes(indices: pa.Array, table: np.ndarray, out: np.ndarray) -> None:
    """Write ``table`` at a dictionary chunk's indices into ``out`` (-1 where null), straight from the indices'
    buffer, in one pass over the rows: a chunk's values' places among values encoded together."""
    import numpy as np

    held, valid = _held_indices(indices)
    table = np.append(table, -1).astype(out.dtype)  # the last: a null's
    if valid is not None:  # (index + 1) * valid - 1 is -1 at a null
        held = held.astype(np.intp) + 1
        held *= valid
        held -= 1
    np.take(table, held, out=out)


def take(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``values[indices]`` (``indices``: non-negative, each below ``len(values)``) by Arrow's take, which reads
    indices of any integer type as they are, where numpy converts them to ``intp`` first and then gathers
    through its general indexing (4.8M int16 indices into 36,000 int32 values: 2.0 against 6.3 ms; 3.1M int32
    indices into 150,000 bytes: 1.0 against 3.6 ms). Read-only, in Arrow's memory."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.dtype == np.bool_:  # Arrow's booleans are bits: taken as bytes
        return take(values.view(np.uint8), indices).view(np.bool_)
    return pc.take(pa.array(values), pa.array(indices), boundscheck=False).to_numpy()


def take_codes(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``table[codes]`` of integer ``codes`` from -1 (a missing value's: the table's last place, as numpy reads -1)
    to ``len(table) - 2`` (the last place is the missing value's only), by :func:`take`."""
    import numpy as np

    return take(np.roll(table, 1), codes + np.int32(1))  # the last place first


def distinct_categories(levels: pd.Index) -> pd.CategoricalDtype:
    """The categorical type of ``levels``, values known to be distinct (a dictionary's). pandas' own check
    that they are hashes them as Python strings and keeps that table with the type: hundreds of MB for
    millions of session ids, held as long as the table."""
    import pandas as pd

    fast = getattr(pd.CategoricalDtype, "_from_fastpath", None)
    return fast(levels, False) if fast is not None else pd.CategoricalDtype(levels)
