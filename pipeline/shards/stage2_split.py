"""Stage 2 of the shards job: each valid, unique pair → its split, stratified by label, exact.

The rule is `assign_splits`: within a label, pairs are ordered by a seeded hash of their
ids; the first round(n · test_fraction) go to test, the next round((n − n_test) ·
val_fraction) to val, the rest to train. Sorting each label's pairs on one worker does not
scale (three labels are three workers, each holding its whole label), so the order is found
in pieces that stay small at any number of rows:

1. the top `BUCKET_BITS` bits of a pair's hash pick its bucket; pairs are counted per
   (label, bucket), a combine whose result has at most 3 × 65,536 entries;
2. from the counts, each label's two boundaries (test | val and val | train) lie in at most
   two buckets, and every pair in another bucket knows its split at once;
3. only the pairs of the boundary buckets, about n / 65,536 each, are grouped and sorted.

So the splits are exactly `assign_splits`'s, on any runner and worker count, and they
are assigned before any image is read: a row rejected later for its image leaves its split
one example short, and moves no other pair.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam

from pipeline.features import stable_hash
from pipeline.inputs import rows

BUCKET_BITS = 16
BOUNDARY = "boundary"


def assign_splits(
    keys: list[str], test_fraction: float, val_fraction: float, seed: int
) -> dict[str, str]:
    """Splits one label's pair keys into train/val/test exactly and deterministically.

    Keys are ordered by a seeded hash, so the result depends only on the keys and the seed
    (not on arrival order, runner or worker count). The first round(n·test) go to test, then
    round((n − n_test)·val) to val: 10% test then 5% of the rest, as in the baseline.
    """
    ordered = sorted(keys, key=lambda key: (stable_hash(key, seed), key))
    n_test = round(len(ordered) * test_fraction)
    n_val = round((len(ordered) - n_test) * val_fraction)
    splits = {}
    for position, key in enumerate(ordered):
        splits[key] = "test" if position < n_test else "val" if position < n_test + n_val else "train"
    return splits


def bucket_of(pair_key: str, seed: int) -> int:
    """The pair's bucket: the high bits of the hash that orders pairs in `assign_splits`."""
    return stable_hash(pair_key, seed) >> (64 - BUCKET_BITS)


@dataclasses.dataclass(frozen=True)
class LabelQuota:
    """Where one label's split boundaries fall among its buckets.

    Attributes:
      n_test: Pairs of this label that go to test.
      n_val: Pairs that go to val.
      test_bucket: The bucket holding position `n_test` (the first pair after test).
      before_test_bucket: Pairs in the buckets before `test_bucket`.
      val_bucket: The bucket holding position `n_test + n_val` (the first train pair).
      before_val_bucket: Pairs in the buckets before `val_bucket`.
    """

    n_test: int
    n_val: int
    test_bucket: int
    before_test_bucket: int
    val_bucket: int
    before_val_bucket: int

    def split_of_bucket(self, bucket: int) -> str | None:
        """The split of every pair in `bucket`, or None for a boundary bucket (rank needed)."""
        if bucket in (self.test_bucket, self.val_bucket):
            return None
        if bucket < self.test_bucket:
            return "test"
        return "val" if bucket < self.val_bucket else "train"

    def split_at(self, position: int) -> str:
        return "test" if position < self.n_test else "val" if position < self.n_test + self.n_val else "train"


def label_quota(bucket_counts, test_fraction: float, val_fraction: float) -> LabelQuota:
    """A label's quota from its (bucket, pairs) counts, with the rounding of `assign_splits`."""
    counts = sorted(bucket_counts)
    total = sum(count for _, count in counts)
    n_test = round(total * test_fraction)
    n_val = round((total - n_test) * val_fraction)

    def bucket_holding(position: int) -> tuple[int, int]:
        before = 0
        for bucket, count in counts:
            if before + count > position:
                return bucket, before
            before += count
        return 1 << BUCKET_BITS, before  # Past the last pair: no bucket holds it.

    test_bucket, before_test = bucket_holding(n_test)
    val_bucket, before_val = bucket_holding(n_test + n_val)
    return LabelQuota(n_test, n_val, test_bucket, before_test, val_bucket, before_val)


class _ClassifyFn(beam.DoFn):
    """Record → (split, record), or → `boundary` keyed by (label, bucket) when its rank decides."""

    def __init__(self, seed: int):
        self._seed = seed

    def process(self, record: rows.Record, quotas: dict):
        bucket = bucket_of(record.pair_key, self._seed)
        split = quotas[record.label].split_of_bucket(bucket)
        if split is None:
            yield beam.pvalue.TaggedOutput(BOUNDARY, ((record.label, bucket), record))
        else:
            yield split, record


def _rank_boundary_bucket(item, quotas: dict, seed: int):
    """A boundary bucket's pairs, sorted as `assign_splits` sorts them → (split, record)."""
    (label, bucket), records = item
    quota = quotas[label]
    before = quota.before_test_bucket if bucket == quota.test_bucket else quota.before_val_bucket
    ordered = sorted(records, key=lambda record: (stable_hash(record.pair_key, seed), record.pair_key))
    for rank, record in enumerate(ordered):
        yield quota.split_at(before + rank), record


class AssignSplits(beam.PTransform):
    """`Record` → (split, Record): stratified by label, exact and deterministic (see above)."""

    def __init__(self, test_fraction: float, val_fraction: float, seed: int):
        super().__init__()
        self._test, self._val, self._seed = test_fraction, val_fraction, seed

    def expand(self, records):
        seed, test, val = self._seed, self._test, self._val
        quotas = (
            records
            | "BucketOf" >> beam.Map(lambda r: ((r.label, bucket_of(r.pair_key, seed)), 1))
            | "CountPerBucket" >> beam.CombinePerKey(sum)
            | "ByLabel" >> beam.MapTuple(lambda label_bucket, count: (label_bucket[0], (label_bucket[1], count)))
            | "GroupByLabel" >> beam.GroupByKey()
            | "Quota" >> beam.MapTuple(lambda label, counts: (label, label_quota(counts, test, val)))
        )
        quota_of = beam.pvalue.AsDict(quotas)
        classified = records | "Classify" >> beam.ParDo(_ClassifyFn(seed), quota_of).with_outputs(
            BOUNDARY, main="assigned"
        )
        ranked = (
            classified[BOUNDARY]
            | "GroupBoundaryBucket" >> beam.GroupByKey()
            | "RankBoundaryBucket" >> beam.FlatMap(_rank_boundary_bucket, quota_of, seed)
        )
        return (classified.assigned, ranked) | "AllSplits" >> beam.Flatten()
