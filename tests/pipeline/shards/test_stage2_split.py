"""Stage 2: the split rule, and splits computed in bounded pieces equal to it."""

from __future__ import annotations

import hashlib
import random
from collections import Counter

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.inputs import rows
from pipeline.shards import stage2_split as split


def records(counts):
    return [
        rows.Record(i, (f"{label + 1}{i:06d}", f"{i}"), ("a", "b"), ("x.jpg", "y.jpg"), label)
        for label, n in enumerate(counts) for i in range(n)
    ]


def expected(items, test, val, seed):
    result = []
    for label in {r.label for r in items}:
        keys = [r.pair_key for r in items if r.label == label]
        result += [(s, key) for key, s in split.assign_splits(keys, test, val, seed).items()]
    return result


@pytest.mark.parametrize("counts, bits", [((40, 40, 40), 16), ((1, 2, 300), 16), ((500, 37, 3), 2), ((0, 5, 0), 1)])
def test_splits_equal_the_exact_rule_and_each_record_comes_out_once(counts, bits, monkeypatch):
    """Few bucket bits put many pairs in each boundary bucket; 16 bits (the job's) put few."""
    monkeypatch.setattr(split, "BUCKET_BITS", bits)
    items = records(counts)
    random.Random(0).shuffle(items)
    with test_pipeline.TestPipeline() as pipeline:
        assigned = pipeline | beam.Create(items) | split.AssignSplits(0.1, 0.05, seed=3)
        assert_that(assigned | beam.MapTuple(lambda s, r: (s, r.pair_key)), equal_to(expected(items, 0.1, 0.05, 3)))


def test_label_quota_places_the_boundaries():
    # Buckets 2, 5, 9 hold 3, 4, 3 pairs: test is position 0 (n_test 1) → bucket 2; val
    # position 1 (n_val round(9 × 0.2) = 2, so 1 + 2 = 3) → bucket 5, after 3 pairs.
    quota = split.label_quota([(5, 4), (2, 3), (9, 3)], 0.1, 0.2)
    assert (quota.n_test, quota.n_val) == (1, 2)
    assert (quota.test_bucket, quota.before_test_bucket, quota.val_bucket, quota.before_val_bucket) == (2, 0, 5, 3)
    assert [quota.split_of_bucket(b) for b in (1, 2, 4, 5, 9)] == ["test", None, "val", None, "train"]


def make_keys(n, prefix):
    return [f"{prefix}{i}" for i in range(n)]


def test_splits_are_exact_disjoint_and_cover_every_key():
    keys = make_keys(1182, "n")
    splits = split.assign_splits(keys, 0.1, 0.05, seed=0)
    assert set(splits) == set(keys)
    counts = Counter(splits.values())
    assert counts["test"] == 118 and counts["val"] == round((1182 - 118) * 0.05) and counts["train"] == 1182 - 118 - 53


def test_splits_do_not_depend_on_arrival_order():
    keys = make_keys(109, "c")
    assert split.assign_splits(keys, 0.1, 0.05, 3) == split.assign_splits(list(reversed(keys)), 0.1, 0.05, 3)
    assert split.assign_splits(keys, 0.1, 0.05, 3) != split.assign_splits(keys, 0.1, 0.05, 4)


def test_stable_hash_is_process_independent():
    # A fixed value: Python's own hash() would change with PYTHONHASHSEED.
    assert split.stable_hash("a-b", 0) == int.from_bytes(
        hashlib.sha256(b"0:a-b").digest()[:8], "big"
    )
