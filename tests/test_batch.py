"""Partitioning of batch scoring: a customer's rows land in one bucket whatever the table and the id's type."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.config import load_playbook
from churnguard.dataset import DataError
from churnguard.engines.partitions import customer_partition as _bucket
from churnguard.model import ChurnModel


def test_an_id_lands_in_one_bucket_as_validation_reads_it():
    text = _bucket(pd.Series(["12", " 12", "12 ", "13", None], dtype="str"), 7)
    assert len(set(text[:3])) == 1
    numbers = _bucket(pd.Series([12, 13]), 7)  # ids read as numbers from one file, as text from another
    assert numbers.tolist() == [text[0], text[3]]
    assert _bucket(pd.Series([None, ""], dtype="object"), 7).tolist() == [text[4]] * 2  # missing ids together
    floats = _bucket(pd.Series([12.0, 13.0]), 7)  # a float column of whole numbers, as validation reads it
    assert floats.tolist() == _bucket(pd.Series(["12.0", "13"], dtype="str"), 7).tolist() == [text[0], text[3]]


def test_buckets_spread_the_ids():
    buckets = _bucket(pd.Series([f"C{i:07d}" for i in range(4000)], dtype="str"), 4)
    assert set(np.unique(buckets)) == {0, 1, 2, 3}
    assert np.bincount(buckets).min() > 800


def test_auto_partitions_by_file_size_or_input_rows_whichever_gives_more(tmp_path):
    """One partition per 256 MiB of input files and per the job's rows: 300 MiB of files are 2 partitions; the
    same files with 15.6M rows (the 1M-customer world: 13.1M transactions, 1.4M tickets, 1M customers) are 6 for
    ``score`` on two cores (5.5M rows shared by the two partitions scored at once; 3 on one core) and 4 for the
    features (4.2M rows: 8 bytes a row within 32 MiB); a small input is one."""
    from churnguard.engines.local import (
        BUCKETS_AT_ONCE,
        FEATURES_ROWS_PER_PARTITION,
        SCORE_ROWS_PER_PARTITION,
        auto_partitions,
    )

    big = tmp_path / "big.parquet"
    with big.open("wb") as fh:
        fh.truncate(300 * 2**20)  # sparse: the size is all that is read
    assert SCORE_ROWS_PER_PARTITION == 5_500_000 // BUCKETS_AT_ONCE
    assert FEATURES_ROWS_PER_PARTITION == 4_194_304
    for per in SCORE_ROWS_PER_PARTITION, FEATURES_ROWS_PER_PARTITION:
        assert auto_partitions([big], rows_per_partition=per) == 2
        assert auto_partitions([big], 2 * per, rows_per_partition=per) == 2
        assert auto_partitions([big], 2 * per + 1, rows_per_partition=per) == 3
        assert auto_partitions([], 0, rows_per_partition=per) == 1
        assert auto_partitions([], per, rows_per_partition=per) == 1
    assert auto_partitions([big], 15_574_873, rows_per_partition=SCORE_ROWS_PER_PARTITION) == 3 * BUCKETS_AT_ONCE
    assert auto_partitions([big], 15_574_873, rows_per_partition=FEATURES_ROWS_PER_PARTITION) == 4


def test_scoring_reads_mapped_columns_and_names_missing_ones_from_the_header(trained, tmp_path):
    """A column the mapping names is read and checked even where no feature uses it; a missing required column
    stops the run before any partitioning, with the file's own columns in the message."""
    from churnguard.config import DataConfig
    from churnguard.engines.local import score_files

    model = ChurnModel.load(trained["result"].model_path)
    tx = trained["demo"].transactions.head(300).rename(columns={"discount": "Disc"})
    tx["Disc"] = tx["Disc"].astype(object)
    tx.loc[7, "Disc"] = "ten percent"
    p = tmp_path / "tx.csv"
    tx.to_csv(p, index=False)
    mapped = DataConfig(columns={"transactions": {"discount": "Disc"}}, on_bad_rows="reject")
    res = score_files(model, transactions=p, tickets=None, customers=None, out=tmp_path / "s.csv",
                      playbook=load_playbook(), data_config=mapped, partitions=2)
    assert res.rejects.loc[res.rejects["column"] == "discount", "row"].tolist() == [8]
    tx.drop(columns="timestamp").to_csv(p, index=False)
    with pytest.raises(DataError, match=r"tx.csv: required transactions column\(s\) 'timestamp' not found; the file "
                                        r"has columns: customer_id, amount, order_id"):
        score_files(model, transactions=p, tickets=None, customers=None, out=tmp_path / "t.csv",
                    playbook=load_playbook(), data_config=mapped, partitions=2)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["s.csv", "tx.csv"]  # no output, no temporary files


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=60), st.integers(1, 20),
       st.integers(1, 5), st.randoms(use_true_random=False))
def test_the_drift_sample_keeps_the_same_customers_however_they_are_split(ids, limit, parts, rnd):
    """``drift_rows`` keeps every candidate up to ``limit``, else ``limit`` of them; keeping it part by part and
    then over the parts' kept ones gives the customers it keeps of all at once, in any order."""
    from churnguard.scoring.score import drift_rows

    ids = np.array(ids, dtype=object)
    whole = set(ids[drift_rows(ids, limit)])
    assert len(whole) == min(len(ids), limit)
    by_hash = sorted(zip(pd.util.hash_array(ids).tolist(), ids.tolist(), strict=True))  # pandas' hashes as they come by default
    assert whole == {i for _, i in by_hash[:limit]}
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    pieces = [np.array(shuffled[i::parts], dtype=object) for i in range(parts)]
    kept = np.concatenate([p[drift_rows(p, limit)] for p in pieces] + [np.array([], dtype=object)])
    assert set(kept[drift_rows(kept, limit)]) == whole


def test_the_drift_sample_orders_ids_of_one_hash_by_id(monkeypatch):
    """Two ids whose hashes are equal are kept in id order (as text), then in the order they came: the rows up
    to the ``limit``-th smallest hash are found by one partition, and by id only when a hash at that cut is
    shared (below it, every row of a shared hash is kept either way)."""
    from churnguard.scoring import score as scoring

    assert scoring.drift_rows(np.array(["c", "a", "b"], dtype=object), 2).tolist() == [True, False, True]  # by hash
    ids = np.array(["c", "a", "b", "a"], dtype=object)
    monkeypatch.setattr(scoring.pd.util, "hash_array", lambda values, **_: np.zeros(len(values), dtype=np.uint64))
    assert scoring.drift_rows(ids, 2).tolist() == [False, True, False, True]  # one hash: "a", "a", then "b"
    assert scoring.drift_rows(ids, 3).tolist() == [False, True, True, True]
    hashes = np.array([5, 1, 1, 3], dtype=np.uint64)  # "c" and "b" share the smallest
    monkeypatch.setattr(scoring.pd.util, "hash_array", lambda values, **_: hashes[: len(values)])
    ids = np.array(["d", "c", "b", "a"], dtype=object)
    assert scoring.drift_rows(ids, 3).tolist() == [False, True, True, True]  # the shared hash below the cut
    assert scoring.drift_rows(ids, 2).tolist() == [False, True, True, False]  # at the cut, both fit
    assert scoring.drift_rows(ids, 1).tolist() == [False, False, True, False]  # at the cut, one fits: "b"


def test_the_drift_sample_merged_after_an_empty_one_keeps_its_categories(tmp_path):
    """A partition without drift candidates leaves an empty sample in the work directory, which comes back
    without its categories' levels; the other partitions' samples merged with it keep them."""
    from churnguard.engines.local import _merged_samples

    sample = pd.DataFrame({"nps_group": pd.Categorical(["passive", None], categories=["detractor", "passive"]),
                           "recency_days": [3.0, 40.0], "churn_probability": [0.2, 0.7],
                           "customer_id": pd.Series(["a", "b"], dtype="str")})
    paths = [tmp_path / f"drift-{b}.arrow" for b in range(3)]
    for path, part in zip(paths, [sample.iloc[:0], sample.iloc[:1], sample.iloc[1:]], strict=True):
        part.to_feather(path)
    pd.testing.assert_frame_equal(_merged_samples(paths), sample, check_exact=True)
    assert _merged_samples(paths[:1]).empty


def test_the_drift_sample_of_the_partitions_is_drawn_over_all_of_them(tmp_path, monkeypatch):
    """The partitions' samples merged: the ``drift_rows`` of all their customers, in the order the partitions
    hold them (a partition's sample is already at most the limit; the merge keeps the limit over all)."""
    from churnguard.engines.local import _merged_samples
    from churnguard.scoring import score as scoring

    rng = np.random.default_rng(4)
    ids = np.array([f"c{i}" for i in rng.permutation(60)], dtype=object)
    whole = pd.DataFrame({"recency_days": rng.random(60), "customer_id": pd.Series(ids, dtype="str")})
    monkeypatch.setattr(scoring, "DRIFT_LIMIT", 25)
    paths = []
    for b, (start, end) in enumerate([(0, 10), (10, 40), (40, 60)]):
        part = whole.iloc[start:end]
        part = part[scoring.drift_rows(part["customer_id"].to_numpy(dtype=object))]  # as a partition draws it
        paths.append(tmp_path / f"drift-{b}.arrow")
        part.reset_index(drop=True).to_feather(paths[-1])
    want = whole[scoring.drift_rows(ids)].reset_index(drop=True)
    assert len(want) == 25
    pd.testing.assert_frame_equal(_merged_samples(paths), want, check_exact=True)


def test_a_partition_scored_without_its_selection_has_the_same_scores(trained):
    """``score_tables(select=False)``, as a partition of ``score_files`` is scored (its selection is made over all
    partitions): the same rows and columns as with the selection, without the selection's columns."""
    from churnguard.dataset import validate_tables
    from churnguard.scoring import score_tables
    from churnguard.scoring.score import SELECTION_COLUMNS

    model = ChurnModel.load(trained["result"].model_path)
    tables = validate_tables(trained["demo"].transactions.head(2000), config=model.require_info().config.data)
    full = score_tables(model, tables, None, load_playbook())
    part = score_tables(model, tables, None, load_playbook(), select=False)
    assert set(SELECTION_COLUMNS) <= set(full.scores.columns)
    assert list(part.scores.columns) == [c for c in full.scores.columns if c not in SELECTION_COLUMNS]
    pd.testing.assert_frame_equal(part.scores, full.scores[part.scores.columns], check_exact=True)
    pd.testing.assert_frame_equal(part.rejects, full.rejects)


def test_the_customers_without_a_features_row_are_found_once_and_given_with_the_scores(trained):
    """``score_tables`` gives the customers of the tables without a features row (first seen after the day) with
    its result, as its rejects report them: the partitions of ``score_files`` take them from there."""
    from churnguard.dataset import validate_tables
    from churnguard.scoring import score_tables
    from churnguard.scoring.score import no_activity_reason, unseen_customers

    model = ChurnModel.load(trained["result"].model_path)
    tx = trained["demo"].transactions.head(3000)
    tables = validate_tables(tx, config=model.require_info().config.data)
    day = tx["timestamp"].sort_values().iloc[len(tx) // 2].normalize()
    result = score_tables(model, tables, day, load_playbook(), select=False)
    assert len(result.unseen) > 0
    assert result.unseen.equals(unseen_customers(tables, result.scores["customer_id"]))
    late = result.rejects[result.rejects["reason"] == no_activity_reason(day)]
    assert late["customer_id"].tolist() == sorted(result.unseen)
    assert not set(result.unseen) & set(result.scores["customer_id"])


def test_partitions_draw_the_drift_sample_of_the_whole(trained, tmp_path, monkeypatch):
    """Scored in partitions, the drift sample holds the customers of the sample scored at once (here with a
    limit below the candidates), with the same features and probabilities, so the same drift table."""
    from churnguard.engines.local import score_files
    from churnguard.scoring import score as scoring
    from churnguard.scoring import score_tables

    model = ChurnModel.load(trained["result"].model_path)
    p = tmp_path / "tx.csv"
    trained["demo"].transactions.to_csv(p, index=False)
    monkeypatch.setattr(scoring, "DRIFT_LIMIT", 150)
    config = model.require_info().config.data
    whole = score_files(model, transactions=p, tickets=None, customers=None, out=tmp_path / "one.csv",
                        playbook=load_playbook(), data_config=config, partitions=1).drift_sample
    parts = score_files(model, transactions=p, tickets=None, customers=None, out=tmp_path / "three.csv",
                        playbook=load_playbook(), data_config=config, partitions=3).drift_sample
    assert len(whole) == 150
    by_id = [s.set_index("customer_id").sort_index() for s in (whole, parts)]
    pd.testing.assert_frame_equal(by_id[1], by_id[0], check_exact=False, rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(scoring.drift_check(model, parts).table, scoring.drift_check(model, whole).table)
    from churnguard.dataset import load_tables

    memory = score_tables(model, load_tables(p, config=config), None, load_playbook()).drift_sample
    pd.testing.assert_frame_equal(memory.set_index("customer_id").sort_index(), by_id[0])
