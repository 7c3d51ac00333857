"""The split of a chunk into customer partitions (``engines.partitions.split_chunk``): each piece holds its
customers' rows in file order, numbered as in the file, and its dictionary columns keep only the values its
rows use, whatever dictionaries the chunk's row groups had."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from churnguard.config import DataConfig
from churnguard.dataset import ROW_COLUMN
from churnguard.engines import partitions
from churnguard.engines.partitions import Spec, _frame, customer_partition, split_chunk


def _coded(codes: list[int | None], values: list[str] | pa.Array) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), pa.array(values))


def test_pieces_hold_their_customers_rows_and_only_the_values_they_use():
    # two row groups with their own dictionaries (as a Parquet file read with read_dictionary gives them)
    ids = pa.chunked_array([_coded([0, 1, 2, 0], ["a", "b", "c"]), _coded([1, 0, None, 2], ["c", "d", "a"])])
    types = pa.chunked_array([_coded([0, 0, 1, 0], ["visit", "email_open"]), _coded([0, 0, 0, None], ["visit"])])
    chunk = pa.table({"customer_id": ids, "event_type": types, "duration_seconds": [1.0, 2.0, 3.0, 4.0,
                                                                                     5.0, 6.0, 7.0, 8.0]})
    spec = Spec(DataConfig(), {}, {"events": 8}, {"events": (11,)}, {"events": {}})
    n = 3
    pieces, _ = split_chunk(chunk, spec, "events", 0, n)

    rows = chunk.to_pandas()
    rows["_row"] = np.arange(11, 19)
    part = customer_partition(rows["customer_id"].astype(object), n)
    assert len(pieces) == n
    for b, piece in enumerate(pieces):
        got = {name: piece.column(name).to_pylist() for name in piece.column_names}
        want = rows[part == b].reset_index(drop=True).astype(object).where(lambda f: f.notna(), None)
        assert got[ROW_COLUMN] == want["_row"].tolist()  # the piece's rows, in file order
        assert got["customer_id"] == want["customer_id"].tolist()
        assert got["event_type"] == want["event_type"].tolist()
        assert got["duration_seconds"] == want["duration_seconds"].tolist()
        for name in ("customer_id", "event_type"):  # no dictionary value that no row of the piece uses
            column = piece.column(name).combine_chunks() if piece.num_rows else None
            if column is not None:
                used = {v for v in column.to_pylist() if v is not None}
                assert set(column.dictionary.to_pylist()) == used
        # the row groups' dictionaries are not unified: a customer of both (a, c) is in the piece's twice, and
        # its frame holds each once
        frame = _frame(piece, consume=False)
        assert frame["customer_id"].astype(object).where(frame["customer_id"].notna(), None).tolist() == (
            got["customer_id"])
        assert frame["customer_id"].cat.categories.is_unique
    # the customers a-d and the missing id spread over the pieces, every row in exactly one of them
    assert sorted(r for p in pieces for r in p.column(ROW_COLUMN).to_pylist()) == list(range(11, 19))


@pytest.mark.parametrize("layout", ["every value everywhere", "rare values", "one value a chunk", "missing rows"])
def test_a_few_values_are_cut_as_marking_the_pairs_cuts_them(monkeypatch, layout):
    # event types and channels (dictionaries of fewer than 127 values) are cut by counting each bucket's codes,
    # first of a sample of its rows: the same pieces (indices, their type, dictionaries) as marking every
    # (bucket, value) pair, also where a bucket leaves a value out that the sample did not find
    monkeypatch.setattr(partitions, "_SAMPLE", 8)
    rng = np.random.default_rng(7)
    rows, n = 3000, 5
    buckets = rng.integers(0, n, rows).astype(np.uint8)
    if layout == "one value a chunk":  # a chunk per row group, each group of one type (the 1M world's events)
        column = pa.chunked_array([_coded([0] * 1000, [t]) for t in ("visit", "email_sent", "visit")])
    else:
        codes = rng.integers(0, 4, rows)
        if layout == "rare values":  # value 1 in three rows, of buckets 0 and 1 only: the others' 2 and 3 move
            codes[codes == 1] = 0
            codes[[5, 1700, 2999]] = 1
            buckets[[5, 1700, 2999]] = [0, 1, 1]
        values = [None if layout == "missing rows" and i % 9 == 4 else int(c) for i, c in enumerate(codes)]
        column = pa.chunked_array([_coded(values, ["visit", "page_view", "email_open", "cart_add"])])
    order = np.argsort(buckets, kind="stable")
    cuts = np.concatenate([[0], np.cumsum(np.bincount(buckets, minlength=n))])
    coded = partitions._Coded.of(column)
    got, want = coded._few(order, cuts), coded._marked(buckets, order, cuts)
    assert len(got) == len(want) == n
    for g, w in zip(got, want, strict=True):
        assert g.type == w.type
        assert g.indices.equals(w.indices)
        assert g.dictionary.equals(w.dictionary)
    if layout == "rare values":
        assert [len(p.dictionary) for p in got] == [4, 4, 3, 3, 3]


def test_a_few_rows_of_a_long_dictionary_keep_only_their_values():
    # 5 rows whose ids come from a dictionary of 100 values (a row group of many customers, few in a piece)
    values = [f"c{i}" for i in range(100)]
    chunk = pa.table({"customer_id": pa.chunked_array([_coded([5, 50, None, 99, 5], values)])})
    spec = Spec(DataConfig(), {}, {"events": 5}, {"events": (1,)}, {"events": {}})
    pieces, _ = split_chunk(chunk, spec, "events", 0, 2)

    part = customer_partition(pd.Series(["c5", "c50", None, "c99", "c5"], dtype=object), 2)
    for b, piece in enumerate(pieces):
        want = [v for v, p in zip(["c5", "c50", None, "c99", "c5"], part, strict=True) if p == b]
        column = piece.column("customer_id").combine_chunks()
        assert column.to_pylist() == want
        assert column.dictionary.to_pylist() == sorted({v for v in want if v is not None}, key=values.index)


def test_a_column_without_values_stays_missing_in_every_piece():
    # a session column with no value in the chunk (an empty dictionary), next to ids of a few customers
    ids = pa.chunked_array([_coded([0, 1, 2, 3, 1], ["a", "b", "c", "d"])])
    sessions = pa.chunked_array([_coded([None] * 5, [])])
    chunk = pa.table({"customer_id": ids, "session_id": sessions})
    spec = Spec(DataConfig(), {}, {"events": 5}, {"events": (1,)}, {"events": {}})
    pieces, _ = split_chunk(chunk, spec, "events", 0, 3)

    assert sorted(r for p in pieces for r in p.column(ROW_COLUMN).to_pylist()) == [1, 2, 3, 4, 5]
    for piece in pieces:
        assert piece.column("session_id").to_pylist() == [None] * piece.num_rows
        assert all(len(c.dictionary) == 0 for c in piece.column("session_id").chunks)


def test_a_value_shared_by_customers_of_several_pieces_is_in_each_of_their_dictionaries():
    # a long session dictionary (100 values) whose value s7 is used by every customer: not one piece's alone
    ids = [f"c{i}" for i in range(12)]
    values = [f"s{i}" for i in range(100)]
    sessions = [7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 40, 3, None, 99, 40, 3, 7, 60, 61, 62, 63, 64]
    chunk = pa.table({"customer_id": pa.chunked_array([_coded(list(range(12)) * 2, ids)]),
                      "session_id": pa.chunked_array([_coded(sessions, values)]),
                      "channel": pa.chunked_array([_coded([0] * 12 + [1] * 12, ["web", "app"])])})  # both in all
    spec = Spec(DataConfig(), {}, {"events": 24}, {"events": (1,)}, {"events": {}})
    n = 3
    pieces, _ = split_chunk(chunk, spec, "events", 0, n)

    part = np.tile(customer_partition(pd.Series(ids, dtype=object), n), 2)
    assert len(set(part)) == n  # s7 is used in every piece
    for b, piece in enumerate(pieces):
        want = [None if s is None else values[s] for s, p in zip(sessions, part, strict=True) if p == b]
        column = piece.column("session_id").combine_chunks()
        assert column.to_pylist() == want
        assert column.dictionary.to_pylist() == sorted({v for v in want if v is not None}, key=values.index)
        channels = piece.column("channel").combine_chunks()
        assert channels.to_pylist() == [c for i, c in enumerate(["web"] * 12 + ["app"] * 12) if part[i] == b]
        assert channels.dictionary.to_pylist() == ["web", "app"]


def test_a_buckets_pieces_become_the_frame_arrow_makes_of_them():
    # pieces with their own dictionaries (values in other orders, missing rows, one piece empty), a text and a
    # number column between the dictionary columns: the same frame as Arrow's to_pandas, categories in order
    pieces = [pa.table({"customer_id": _coded([0, 1, None], ["b", "a"]), "value": [1.5, None, 3.0],
                        "event_type": _coded([0, 0, 1], ["visit", "email_open"]), "note": ["x", None, "z"]}),
              pa.table({"customer_id": _coded([], ["q"]), "value": pa.array([], pa.float64()),
                        "event_type": _coded([], pa.array([], pa.string())), "note": pa.array([], pa.string())}),
              pa.table({"customer_id": _coded([1, 0], ["c", "b"]), "value": [4.0, 5.0],
                        "event_type": _coded([None, 0], ["page_view"]), "note": ["w", "v"]})]
    table = pa.concat_tables(pieces)
    want = table.to_pandas()
    got = _frame(table, consume=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got["customer_id"].cat.categories.tolist() == ["b", "a", "q", "c"]
    assert got["event_type"].cat.codes.tolist() == [0, 0, 1, -1, 2]
    assert _frame(pa.table({"n": [1, 2]}), consume=False).equals(pd.DataFrame({"n": [1, 2]}))


def test_narrow_indices_of_the_pieces_widen_when_a_buckets_dictionaries_are_unified():
    # two chunks of 100 values each (one-byte indices in their pieces): a bucket's customers use all 200,
    # so its unified dictionary needs wider indices, and its frame holds every value
    spec = Spec(DataConfig(), {}, {"events": 400}, {"events": (1, 201)}, {"events": {}})
    ids = [f"c{i % 3}" for i in range(200)]
    part = customer_partition(pd.Series(ids, dtype=object), 2)
    b = int(part[0])  # the bucket of c0
    pieces, want = [], []
    for i, first in enumerate((0, 100)):
        values = [f"v{first + k % 100}" for k in range(200)]
        chunk = pa.table({"customer_id": ids, "kind": _coded([k % 100 for k in range(200)], values[:100])})
        cut, _ = split_chunk(chunk, spec, "events", i, 2)
        pieces.append(cut[b])
        want += [v for v, p in zip(values, part, strict=True) if p == b]
    assert all(p.schema.field("kind").type.index_type == pa.int8() for p in pieces)
    frame = _frame(pa.concat_tables(pieces, promote_options="permissive"), consume=True)
    assert len(frame["kind"].cat.categories) == 200
    assert frame["kind"].astype(object).tolist() == want


def test_pieces_dictionaries_holding_a_value_twice_give_it_one_category():
    # a bucket's pieces as the split leaves them: each row group's dictionary kept, so a value may be in a
    # piece's dictionary twice and in several pieces'; one-byte indices, the highest (127) beside missing rows
    def coded(codes, values):
        return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int8()), pa.array(values))

    many = [f"v{i}" for i in range(128)]
    pieces = [pa.table({"customer_id": coded([0, 1, 2, None], ["a", "b", "a"]), "kind": coded([127, None, 0, 5], many),
                        "score": coded([0, 1, 2, 2], [10, 20, 10])}),
              pa.table({"customer_id": coded([1, 0], ["b", "c"]), "kind": coded([None, 1], ["v5", "w"]),
                        "score": coded([1, 0], [30, 20])})]
    frame = _frame(pa.concat_tables(pieces, promote_options="permissive"), consume=True)

    ids = frame["customer_id"]
    assert ids.cat.categories.tolist() == ["a", "b", "c"]  # in order of first appearance, each once
    assert ids.cat.codes.tolist() == [0, 1, 0, -1, 2, 1]
    assert frame["kind"].astype(object).where(frame["kind"].notna(), None).tolist() == [
        "v127", None, "v0", "v5", None, "w"]
    assert frame["kind"].cat.categories.is_unique
    assert len(frame["kind"].cat.categories) == 129
    assert frame["score"].cat.categories.tolist() == [10, 20, 30]  # numbers stay numbers
    assert frame["score"].astype(int).tolist() == [10, 20, 10, 10, 20, 30]
    one = _frame(pa.table({"score": coded([0, 1, 2], [10, 20, 10])}), consume=False)  # one piece: unified too
    assert one["score"].cat.categories.tolist() == [10, 20]
    assert one["score"].cat.codes.tolist() == [0, 1, 0]


def test_pieces_sliced_with_missing_rows_become_the_categoricals_of_their_values():
    # pieces whose indices start inside their buffers (slices), with missing rows and 16-bit indices, and enough
    # values for the codes to need two bytes: each row's value as Arrow reads it, each value one category
    rng = np.random.default_rng(5)
    values = [f"id{i}" for i in range(300)]
    pieces = []
    for k in range(3):
        codes = rng.integers(0, 300, 50)
        mask = rng.random(50) < 0.3
        dictionary = pa.array([*values[k:], f"x{k}", f"y{k}"])  # each piece's: 300 values in all, 6 of its own
        whole = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int16), mask=mask), dictionary)
        pieces.append(pa.table({"customer_id": whole.slice(7, 30)}))
    table = pa.concat_tables(pieces, promote_options="permissive")
    frame = _frame(table, consume=False)

    ids = frame["customer_id"]
    assert ids.cat.codes.dtype == np.int16  # the type pandas keeps for 306 categories: no conversion
    assert ids.cat.categories.is_unique
    assert len(ids.cat.categories) == 306
    assert ids.astype(object).where(ids.notna(), None).tolist() == table.column("customer_id").to_pylist()


def test_text_columns_longer_than_a_block_keep_each_buckets_rows_in_file_order(monkeypatch):
    # text (order ids) taken a block of rows at a time, in two chunks whose blocks cross between them, with
    # missing values and a bucket without rows in some blocks: each piece holds its customers' rows as the
    # chunk has them
    monkeypatch.setattr(partitions, "_TAKE_BLOCK", 16)
    rng = np.random.default_rng(2)
    ids = [f"c{i}" for i in rng.integers(0, 9, 100)]
    orders = [None if i % 7 == 0 else f"o{i}-{'x' * (i % 5)}" for i in range(100)]
    chunk = pa.table({"customer_id": pa.chunked_array([ids[:37], ids[37:]]),
                      "order_id": pa.chunked_array([orders[:37], orders[37:]], type=pa.large_string())})
    spec = Spec(DataConfig(), {}, {"transactions": 100}, {"transactions": (1,)}, {"transactions": {}})
    n = 5
    pieces, _ = split_chunk(chunk, spec, "transactions", 0, n)

    part = customer_partition(pd.Series(ids, dtype=object), n)
    for b, piece in enumerate(pieces):
        assert piece.column("order_id").type == pa.large_string()
        assert piece.column("order_id").to_pylist() == [o for o, p in zip(orders, part, strict=True) if p == b]
        assert piece.column(ROW_COLUMN).to_pylist() == [r + 1 for r in np.flatnonzero(part == b)]


@pytest.mark.parametrize("offset", [0, 3])
def test_numbers_and_times_with_missing_values_keep_each_buckets_rows_and_gaps(monkeypatch, offset):
    # columns of fixed width with missing values (durations, a count, timestamps; in two chunks, or in one cut
    # from a larger array: its values and validity start past its buffers' beginning), taken without bounds
    # checks: each piece holds its customers' values, missing where they were, in file order
    monkeypatch.setattr(partitions, "_TAKE_BLOCK", 16)
    rng = np.random.default_rng(4)
    ids = [f"c{i}" for i in rng.integers(0, 9, 100)]
    seconds = [None if i % 3 else float(i) + 0.5 for i in range(100)]
    counts = [None if i % 4 == 1 else i - 50 for i in range(100)]
    stamps = [None if i % 5 == 2 else pd.Timestamp("2025-01-01") + pd.Timedelta(minutes=i) for i in range(100)]

    def chunked(values, type_):
        whole = pa.array([None] * offset + values, type=type_)
        return pa.chunked_array([whole.slice(offset)] if offset else [whole.slice(0, 41), whole.slice(41)])

    chunk = pa.table({"customer_id": pa.chunked_array([ids[:41], ids[41:]]),
                      "duration_seconds": chunked(seconds, pa.float64()), "n": chunked(counts, pa.int16()),
                      "timestamp": chunked(stamps, pa.timestamp("ns"))})
    spec = Spec(DataConfig(), {}, {"events": 100}, {"events": (1,)}, {"events": {}})
    n = 4
    pieces, _ = split_chunk(chunk, spec, "events", 0, n)

    part = customer_partition(pd.Series(ids, dtype=object), n)
    for b, piece in enumerate(pieces):
        for name, values in (("duration_seconds", seconds), ("n", counts), ("timestamp", stamps)):
            column = piece.column(name)
            assert column.type == chunk.column(name).type
            assert column.to_pylist() == [v for v, p in zip(values, part, strict=True) if p == b], name
            assert column.null_count == sum(v is None for v, p in zip(values, part, strict=True) if p == b)


def test_a_column_without_values_in_a_later_chunk_comes_back_with_the_first_chunks_type():
    # the durations of the second chunk are all missing: its pieces hold them as Arrow's null type (no buffer);
    # each bucket's frame has them as the first chunk's floats, as if the pieces had kept the type
    first = pa.table({"customer_id": ["a", "b", "c", "a"], "duration_seconds": [1.5, None, 2.0, 3.0]})
    later = pa.table({"customer_id": ["b", "c", "a", "d", "b"],
                      "duration_seconds": pa.array([None] * 5, type=pa.float64())})
    spec = Spec(DataConfig(), {}, {"events": 9}, {"events": (1, 5)}, {"events": {}})
    n = 2
    pieces = [split_chunk(chunk, spec, "events", i, n)[0] for i, chunk in enumerate((first, later))]
    assert all(p.schema.field("duration_seconds").type == pa.float64() for p in pieces[0])
    assert all(p.schema.field("duration_seconds").type == pa.null() for p in pieces[1])

    whole = pa.concat_tables([first, later]).to_pandas()
    part = customer_partition(whole["customer_id"].astype(object), n)
    for b in range(n):
        frame = _frame(pa.concat_tables([pieces[0][b], pieces[1][b]], promote_options="permissive"), consume=True)
        assert frame["duration_seconds"].dtype == np.float64
        want = whole.loc[part == b, "duration_seconds"].to_numpy()
        np.testing.assert_array_equal(frame["duration_seconds"].to_numpy(), want)


def _overflowing_ids(path, ids: list[str | None], groups: int) -> None:
    """A Parquet file of ``ids`` in ``groups`` row groups whose dictionary page holds only the first few
    distinct ids: the pages after it are stored plain, as a large events file's customer ids are."""
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"customer_id": pa.array(ids, type=pa.large_string()), "n": np.arange(len(ids))}),
                   path, row_group_size=len(ids) // groups, dictionary_pagesize_limit=64, data_page_size=256)


def test_ids_read_as_text_are_the_values_the_files_dictionaries_hold(tmp_path):
    import pyarrow.parquet as pq

    from churnguard._io.read import coded_file, read_coded

    rng = np.random.default_rng(5)
    ids = [None if i % 97 == 5 else f"C{int(c):05d}" for i, c in enumerate(rng.integers(0, 900, size=6000))]
    _overflowing_ids(tmp_path / "e.parquet", ids, groups=3)
    dictionaries = pq.ParquetFile(tmp_path / "e.parquet", read_dictionary=["customer_id"])
    assert len(dictionaries.read_row_group(0).column("customer_id").chunk(0).dictionary) > 300  # plain pages
    file = coded_file(tmp_path / "e.parquet", ["customer_id"], ["customer_id"])
    for groups in ([0], [1, 2], []):
        got = read_coded(file, groups, ["customer_id", "n"], ["customer_id"]).column("customer_id")
        want = (dictionaries.read_row_groups(groups) if groups else dictionaries.schema_arrow.empty_table()
                ).column("customer_id")
        assert got.type == want.type  # dictionary<values=string, indices=int32>, as Arrow's reader gives
        assert got.num_chunks == 1  # one dictionary for the groups read together
        assert got.to_pylist() == want.to_pylist()  # the same id at every row, missing ones missing
        assert got.null_count == want.null_count == sum(ids[2000 * g + i] is None for g in groups
                                                        for i in range(2000))
        if len(groups) == 1:  # a group's values are written in order of first appearance: the same dictionary
            assert got.chunk(0).dictionary.equals(want.chunk(0).dictionary)
            assert got.chunk(0).indices.equals(want.chunk(0).indices)
        else:  # distinct values: each id once, where the groups' dictionaries hold some twice
            assert len(got.chunk(0).dictionary) == len(set(got.to_pylist()) - {None})


@pytest.mark.parametrize("partitions", [1, 3])
def test_events_ids_read_as_dictionaries_or_as_text_give_the_same_features_and_rejects(tmp_path, monkeypatch,
                                                                                      partitions):
    """The events' customer ids read as text and encoded here (``dataset.contract._HASHED``) or as the file's own
    dictionaries (its pages partly stored plain), in one partition (``load_tables``) and in three: the same
    features and the same rejects, bad ids included (missing, unknown, with blanks around them)."""
    from churnguard.config import load_config
    from churnguard.dataset import contract
    from churnguard.dataset import read as dataset_read
    from churnguard.demo import generate_demo_data
    from churnguard.engines import build_features_from_files

    demo = generate_demo_data(300, seed=6, events=True)
    events = demo.events.copy()
    events["customer_id"] = events["customer_id"].astype(object)
    events.loc[events.index[5::400], "customer_id"] = None
    events.loc[events.index[7::500], "customer_id"] = "ZZZ-unknown"
    events.loc[events.index[9::600], "customer_id"] = "  " + events.loc[events.index[9::600], "customer_id"] + " "
    paths = {"transactions": tmp_path / "t.parquet", "customers": tmp_path / "c.parquet",
             "events": tmp_path / "e.parquet"}
    demo.transactions.to_parquet(paths["transactions"], index=False)
    demo.customers.to_parquet(paths["customers"], index=False)
    events.to_parquet(paths["events"], index=False, row_group_size=len(events) // 4, dictionary_pagesize_limit=64,
                      data_page_size=512)
    config = load_config().with_overrides(data={"on_bad_rows": "reject"})
    results = {}
    for read in ("text", "dictionaries"):
        if read == "dictionaries":
            for reader in (contract, dataset_read):  # the split's plan of the inputs reads it from the contract
                monkeypatch.setattr(reader, "_HASHED", {})
        out = tmp_path / f"{read}.parquet"
        result = build_features_from_files("local", paths["transactions"], None, paths["customers"],
                                           events=paths["events"], as_of="2025-06-30", out=out, config=config,
                                           partitions=partitions)
        results[read] = (pd.read_parquet(out), result.rejects)
    (features, rejects), (want_features, want_rejects) = results["text"], results["dictionaries"]
    assert features["sessions_90d"].sum() > 50
    pd.testing.assert_frame_equal(features, want_features, check_exact=True)
    found = rejects.loc[rejects["table"] == "events", "reason"].value_counts()
    assert found.filter(like="empty").sum() > 50  # missing ids
    assert found.filter(like="neither").sum() > 50  # unknown ones
    pd.testing.assert_frame_equal(rejects, want_rejects, check_exact=True)
