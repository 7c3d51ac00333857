"""Partitioning of batch scoring: a customer's rows land in one bucket whatever the table and the id's type."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.batch import _bucket


def test_an_id_lands_in_one_bucket_as_validation_reads_it():
    text = _bucket(pd.Series(["12", " 12", "12 ", "13", None], dtype="str"), 7)
    assert len(set(text[:3])) == 1
    numbers = _bucket(pd.Series([12, 13]), 7)  # ids read as numbers from one file, as text from another
    assert numbers.tolist() == [text[0], text[3]]
    assert _bucket(pd.Series([None, ""], dtype="object"), 7).tolist() == [text[4]] * 2  # missing ids together


def test_buckets_spread_the_ids():
    buckets = _bucket(pd.Series([f"C{i:07d}" for i in range(4000)], dtype="str"), 4)
    assert set(np.unique(buckets)) == {0, 1, 2, 3}
    assert np.bincount(buckets).min() > 800
