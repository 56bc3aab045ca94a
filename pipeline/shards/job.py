"""The shards job, stage by stage: read → split → encode → write → metadata.

    CSV files ─ stage1_read.ReadRows ─ stage1_read.DropDuplicatePairs ─ stage2_split.AssignSplits
        ─ stage3_encode.PreprocessFn ─ stage4_write.WriteFiles (shards, rejected.jsonl)
        ─ stage5_metadata: metadata.json, written last

Every row read ends up written or in rejected.jsonl, whichever stage refuses it. No stage
holds a split, a shard or a label in memory: the only groupings are by pair (duplicates),
by boundary bucket (splits) and by destination over file names (writes), and the payload
(encoded images) is written by the stage that makes it, without a shuffle. Partial files live
in the run's temporary folder, which the launcher creates before and removes after the run.
"""

from __future__ import annotations

import apache_beam as beam

from pipeline.shards import stage1_read as read
from pipeline.shards import stage2_split as split
from pipeline.shards import stage3_encode as encode
from pipeline.shards import stage4_write as write
from pipeline.shards import stage5_metadata as metadata
from pipeline.shards.settings import JobSettings


def _rejected_line(rejection) -> tuple[tuple[str, int], bytes]:
    return (write.REJECTED, 0), rejection.to_json_line().encode("utf-8")


class BuildShards(beam.PTransform):
    """CSV glob → shards per split, rejected.jsonl and metadata.json under settings.out.

    `csv_files`, the number of files the glob matched when the job was launched, only decides
    whether they are worth spreading over workers (a shuffle stage for one file is not).
    """

    def __init__(self, csv_pattern: str, settings: JobSettings, csv_files: int = 2):
        super().__init__()
        self._csv_pattern, self._settings, self._csv_files = csv_pattern, settings, csv_files

    def expand(self, pipeline):
        settings = self._settings
        rows = pipeline | "ReadRows" >> read.ReadRows(self._csv_pattern, spread=self._csv_files > 1)
        unique = rows.records | "DropDuplicatePairs" >> read.DropDuplicatePairs()
        split_records = unique.records | "AssignSplits" >> split.AssignSplits(
            settings.test_fraction, settings.val_fraction, settings.seed
        )
        encoded = split_records | "Preprocess" >> beam.ParDo(encode.PreprocessFn(settings)).with_outputs(
            encode.REJECTED, main="examples"
        )
        examples = encoded.examples
        rejected_sources = [rows[read.REJECTED], unique[read.REJECTED], encoded[encode.REJECTED]]

        def shard_of(example):
            index = write.shard_index(example.pair_key, settings.shard_count(example.split))
            return (example.split, index), example.serialized

        keyed = [examples | "KeyByShard" >> beam.Map(shard_of)]
        keyed += [source | f"RejectedJson{i}" >> beam.Map(_rejected_line) for i, source in enumerate(rejected_sources)]
        files = tuple(keyed) | "WriteFiles" >> write.WriteFiles(settings)

        stats = [examples | "StatWritten" >> beam.Map(metadata.WrittenExample.of), *rejected_sources, rows[read.FILES]]
        totals = tuple(stats) | "AllStats" >> beam.Flatten() | "CountAll" >> beam.CombineGlobally(metadata.JobStats())
        return (
            pipeline
            | "MetadataTrigger" >> beam.Create([None])
            | "WriteMetadata"
            >> beam.Map(metadata.write_metadata, settings, beam.pvalue.AsSingleton(totals), beam.pvalue.AsSingleton(files))
        )
