"""`make score`: new tweet pairs (CSV + images) → predictions of an exported model, with Beam's RunInference.

Locally (Beam's FnApiRunner in this process; the default):

    python -m pipeline.score --model out/demo/model/serving --csv data/demo/tweets.csv \\
        --images data/demo/images --out out/demo/scores

On Dataflow, the same job with standard Beam options (see docs/scoring-and-serving.md):

    python -m pipeline.score --model gs://BUCKET/jobs/JOB/model/serving --csv 'gs://BUCKET/new/pairs-*.csv' \\
        --images gs://BUCKET/new/images --out gs://BUCKET/scores --runner DataflowRunner \\
        --project PROJECT --region REGION --temp_location gs://BUCKET/tmp --setup_file ./setup.py

The CSV has the shards job's columns; `label` is optional, and when it is there the summary
holds accuracy, macro-F1 and the confusion matrix. Rows are validated as the shards job does
it, and a refused row goes to rejected.jsonl with its reason. Flags, checks, errors and exit
statuses are the launcher's (`pipeline.launcher`), as for the shards job; the completion file
is summary.json, and every row read must be scored or rejected.
"""

from __future__ import annotations

import dataclasses

from pipeline import launcher
from pipeline.cli import REQUIRED, UsageError
from pipeline.inputs import rows

SUMMARY_FILE = "summary.json"
PREDICTIONS = "predictions"


@dataclasses.dataclass(frozen=True)
class ScoreSettings(launcher.BeamJobSettings):
    """The scoring job's settings: `python -m pipeline.score` flags, and what workers are told.

    Attributes:
      model: The exported model: trainer.task's JOB_DIR/model/serving (local or gs://).
      batch_size: Pairs per model call.
      model_copies: Model copies per machine, shared by its worker processes; 0 loads one per worker process.
      write_csv: Also write predictions-*.csv (for spreadsheets, BigQuery).
      output_shards: Number of predictions files; 0 lets the runner split the work.
    """

    model: str = dataclasses.field(default="", metadata=REQUIRED)
    batch_size: int = 64
    model_copies: int = 0
    write_csv: bool = False
    output_shards: int = 0

    def check(self) -> None:
        super().check()
        if self.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        if self.model_copies < 0 or self.output_shards < 0:
            raise ValueError("--model-copies and --output-shards must be 0 or more")


def check_model(settings: ScoreSettings) -> ScoreSettings:
    """Refuses a --model folder without a SavedModel before any worker starts."""
    import tensorflow as tf

    if not tf.io.gfile.exists(f"{settings.model.rstrip('/')}/saved_model.pb"):
        raise UsageError(f"--model {settings.model} holds no saved_model.pb (give trainer.task's JOB_DIR/model/serving)")
    return settings


def summary_text(summary: dict) -> str:
    """The end-of-job report printed to stdout (the launcher adds rows/s)."""
    lines = [f"rows read {summary['rows_read']} = scored {summary['rows_scored']} + rejected {summary['rows_rejected']}"]
    lines += [f"  rejected {reason}: {count}" for reason, count in summary["rejected_by_reason"].items()]
    lines.append("predicted " + ", ".join(f"{name} {count}" for name, count in summary["predicted_counts"].items()))
    if summary.get("metrics"):
        from pipeline import metrics

        lines.append(f"{summary['labelled_rows']} labelled rows: " + metrics.format_table("scored", summary["metrics"]))
    lines.append(f"wrote {', '.join(summary['files'])}")
    return "\n".join(lines)


JOB = launcher.BeamJob(
    prog="python -m pipeline.score",
    description="Score tweet pairs (CSV + images) with an exported model (Apache Beam RunInference).",
    settings_class=ScoreSettings,
    columns=rows.PAIR_COLUMNS,
    outputs=(f"{PREDICTIONS}-*-of-*", rows.REJECTED_FILE),
    completion_file=SUMMARY_FILE,
    accounted="rows_scored",
    prepare=check_model,
    transform="pipeline.score.job:ScorePairs",
    summary=summary_text,
)


# Runs the job and returns summary.json's contents, raising UsageError or JobFailed; and the
# command line, which reports those as one `error:` line.
run = JOB.run
main = JOB.main
