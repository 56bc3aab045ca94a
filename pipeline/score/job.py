"""The scoring job, stage by stage: read → drop duplicates → read images → RunInference → write.

    CSV files ─ stage1_read.ReadRows ─ stage1_read.DropDuplicatePairs ─ ReadImagesFn
        ─ RunInference (keyed by the row, dead letter) ─ predictions-SSSSS-of-NNNNN.jsonl (and
        .csv), rejected.jsonl ─ summary.json (written last)

Rows are validated by the shards job's own code (`pipeline.shards.stage1_read`,
`pipeline.inputs`), so a row is refused here for the same reasons, and with the same codes, as
there. Rows with a label are
also counted into a confusion matrix, summed across workers like every other count: no
stage holds the predictions in memory.
"""

from __future__ import annotations

import collections
import json
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from pipeline import features, metrics
from pipeline.cli import Progress, first_line
from pipeline.inputs import image_files, rows
from pipeline.score.command import PREDICTIONS, SUMMARY_FILE, ScoreSettings
from pipeline.score.inference import Pair, PairModelHandler
from pipeline.shards import stage1_read as read

REJECTED = image_files.REJECTED
CSV_HEADER = ",".join(list(features.ID_KEYS) + ["label"] + [f"p_{name}" for name in features.LABELS] + ["true_label"])


class ReadImagesFn(image_files.PooledRowsFn):
    """`Record` → (`Record`, `Pair`) with both images' bytes, or the row's `Rejection`.

    Reads run in the process's thread pool, a bounded number ahead of the outputs, which
    keep input order. The headers are checked here (missing, empty, bombs, not an image), so
    the model only sees images that the shards job would have decoded.
    """

    def __init__(self, settings: ScoreSettings):
        self._settings = settings

    def setup(self):
        import tensorflow as tf

        self._tf = tf
        self._files = image_files.ImageFiles(self._settings.images, self._settings.max_pixels)
        self._headers = image_files.header_check(self._settings.max_pixels)
        self._pool = image_files.shared_pool(self._settings.thread_count())

    def _read(self, record: rows.Record) -> list[bytes] | rows.RowError:
        """Runs in the pool: both images' bytes, their headers checked, or the row's error."""
        try:
            datas = [self._files.read(name) for name in record.image_files]
            for data, name in zip(datas, record.image_files):
                try:
                    status = int(self._headers(self._tf.constant(data)))
                except self._tf.errors.InvalidArgumentError as error:
                    raise image_files.undecodable(name, error) from None
                self._files.check_status(status, name)
        except rows.RowError as error:
            return error
        return datas

    def _output(self, record: rows.Record, result):
        if isinstance(result, rows.RowError):
            return image_files.rejected(record, result)
        return record, Pair(*record.texts, *result)

    def process(self, record: rows.Record):
        self._submit(record, self._read, record)
        yield from self._ready(self.AHEAD)


def prediction_json(record: rows.Record, probabilities) -> dict:
    """One line of predictions-*.jsonl: ids, the predicted label, probabilities, the true label."""
    best = max(range(len(features.LABELS)), key=lambda i: probabilities[i])
    result = {
        **dict(zip(features.ID_KEYS, record.ids)),
        "label": features.LABELS[best],
        "probabilities": dict(zip(features.LABELS, probabilities)),
    }
    if record.label != rows.NO_LABEL:
        result["true_label"] = features.LABELS[record.label]
    return result


def prediction_csv(prediction: dict) -> str:
    cells = [prediction[key] for key in features.ID_KEYS] + [prediction["label"]]
    cells += [repr(prediction["probabilities"][name]) for name in features.LABELS] + [prediction.get("true_label", "")]
    return ",".join(cells)  # Ids, label names and numbers: nothing that needs quoting.


def rejection_reason(scores) -> str:
    """The shards job's reason code for an invalid row: the signature's `reason`, or for exports
    from before it had one, read from its `error`."""
    from pipeline.preprocess import images

    if scores.reason:
        return scores.reason
    too_large = images.STATUS_MESSAGES[images.HEADER_TOO_LARGE]
    return "image_too_large" if scores.error.endswith(too_large) else "undecodable_image"


class FormatFn(beam.DoFn):
    """(`Record`, `PredictionResult`) → a prediction dict, or a `Rejection` for an unusable image."""

    def setup(self):
        self._progress = Progress("score")

    def process(self, item):
        record, result = item
        self._progress.tick()
        scores = result.inference
        if not scores.valid:
            yield image_files.rejected(record, rows.RowError(rejection_reason(scores), scores.error))
            return
        Metrics.counter("rows", "scored").inc()
        yield prediction_json(record, scores.probabilities)


def _dead_letter(item) -> list[rows.Rejection]:
    """A batch RunInference could not score (the model call raised) → one rejection per row."""
    batch, error = item
    message = f"the model failed on this row's batch: {type(error).__name__}: {first_line(error)}"
    return [rows.Rejection.of(record, "inference_failed", message) for record, _ in batch]


class ScoredPair(NamedTuple):
    """What summary.json counts of a scored pair: its predicted label, and its true one if known."""

    true_label: str | None
    predicted: str

    @classmethod
    def of(cls, prediction: dict) -> "ScoredPair":
        return cls(prediction.get("true_label"), prediction["label"])


class ScoreStats(beam.CombineFn):
    """Counts of the run from `CsvFileRead`s, `rows.Rejection`s and `ScoredPair`s: rows per file,
    scored, rejected by reason, predicted labels, and the confusion matrix of labelled rows."""

    def create_accumulator(self):
        return {"files": [], "scored": 0, "rejected": collections.Counter(), "predicted": collections.Counter(),
                "confusion": collections.Counter()}

    def add_input(self, totals, item):
        if isinstance(item, read.CsvFileRead):
            totals["files"].append(item._asdict())
        elif isinstance(item, rows.Rejection):
            totals["rejected"][item.reason] += 1
        else:
            totals["scored"] += 1
            totals["predicted"][item.predicted] += 1
            if item.true_label is not None:
                totals["confusion"][(item.true_label, item.predicted)] += 1
        return totals

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for totals in accumulators:
            merged["files"] += totals["files"]
            merged["scored"] += totals["scored"]
            for key in ("rejected", "predicted", "confusion"):
                merged[key].update(totals[key])
        return merged

    def extract_output(self, totals):
        return totals


def build_summary(settings: ScoreSettings, totals: dict, written: list[str]) -> dict:
    """summary.json: counts that reconcile, and the metrics when rows had labels."""
    files = sorted(totals["files"], key=lambda f: f["path"])
    rejected = dict(sorted(totals["rejected"].items()))
    summary = {
        "model": settings.model,
        "csv_files": files,
        "rows_read": sum(f["rows"] for f in files),
        "rows_scored": totals["scored"],
        "rows_rejected": sum(rejected.values()),
        "rejected_by_reason": rejected,
        "predicted_counts": {name: totals["predicted"][name] for name in features.LABELS},
        "labelled_rows": sum(totals["confusion"].values()),
        "batch_size": settings.batch_size,
        "files": sorted(FileSystems.split(path)[1] for path in written),
    }
    if summary["labelled_rows"]:
        index = features.LABEL_INDEX
        matrix = [[0] * len(features.LABELS) for _ in features.LABELS]
        for (true_label, predicted), count in totals["confusion"].items():
            matrix[index[true_label]][index[predicted]] = count
        summary["metrics"] = metrics.report_of_matrix(matrix)
    return summary


def _write_summary(_, settings: ScoreSettings, totals: dict, *written: list[str]) -> str:
    summary = build_summary(settings, totals, [path for paths in written for path in paths])
    path = FileSystems.join(settings.out, SUMMARY_FILE)
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(summary, indent=2, sort_keys=True).encode("utf-8"))
    return path


class ScorePairs(beam.PTransform):
    """CSV glob → predictions, rejected.jsonl and summary.json under settings.out."""

    def __init__(self, csv_pattern: str, settings: ScoreSettings, csv_files: int = 2):
        super().__init__()
        self._csv_pattern, self._settings, self._csv_files = csv_pattern, settings, csv_files

    def expand(self, pipeline):
        settings = self._settings
        read_rows = pipeline | "ReadRows" >> read.ReadRows(self._csv_pattern, spread=self._csv_files > 1, label_required=False)
        unique = read_rows.records | "DropDuplicatePairs" >> read.DropDuplicatePairs()
        loaded = unique.records | "ReadImages" >> beam.ParDo(ReadImagesFn(settings)).with_outputs(REJECTED, main="pairs")
        handler = KeyedModelHandler(PairModelHandler(settings.model, settings.batch_size, settings.model_copies))
        inferred, dead = loaded.pairs | "RunInference" >> RunInference(handler).with_exception_handling()
        formatted = inferred | "Format" >> beam.ParDo(FormatFn()).with_outputs(REJECTED, main="predictions")
        predictions = formatted.predictions
        failed = dead.failed_inferences | "DeadLetter" >> beam.FlatMap(_dead_letter)
        rejections = (
            [read_rows[read.REJECTED], unique[read.REJECTED], loaded[REJECTED], formatted[REJECTED], failed]
            | "AllRejected" >> beam.Flatten()
        )

        prefix = FileSystems.join(settings.out, PREDICTIONS)
        written = [
            predictions
            | "PredictionJson" >> beam.Map(lambda p: json.dumps(p, ensure_ascii=False))
            | "WritePredictions" >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl", num_shards=settings.output_shards),
            rejections
            | "RejectedJson" >> beam.Map(rows.Rejection.to_json_line)
            | "WriteRejected" >> beam.io.WriteToText(FileSystems.join(settings.out, rows.REJECTED_FILE), shard_name_template=""),
        ]
        if settings.write_csv:
            written.append(
                predictions
                | "PredictionCsv" >> beam.Map(prediction_csv)
                | "WriteCsv" >> beam.io.WriteToText(prefix, file_name_suffix=".csv", num_shards=settings.output_shards,
                                                    header=CSV_HEADER)
            )
        events = [read_rows[read.FILES], rejections, predictions | "StatScored" >> beam.Map(ScoredPair.of)]
        totals = events | "AllStats" >> beam.Flatten() | "CountAll" >> beam.CombineGlobally(ScoreStats())
        return (
            pipeline
            | "SummaryTrigger" >> beam.Create([None])
            | "WriteSummary" >> beam.Map(_write_summary, settings, beam.pvalue.AsSingleton(totals),
                                         *[beam.pvalue.AsList(files) for files in written])
        )
