"""`make shards`: tweet-pair CSV(s) + images folder → TFRecord shards, metadata.json, rejected.jsonl.

Locally (Beam's FnApiRunner in this process, decoding on every core; the default):

    python -m pipeline.shards --csv data/demo/tweets.csv --images data/demo/images \\
        --vocab data/demo/vocab.txt --out data/shards

The tokenizer is the text encoder's: `--text-encoder DIR` reads the vocabulary and casing from
the encoder that training will use (a `model.import_hf` output, say), `--vocab` takes a
vocab.txt, and without either `--preprocess-handle` is loaded from TF Hub.

On Dataflow, the same job with standard Beam options (see docs/google-cloud.md for the worker
container); many CSV files are read in parallel, one worker each:

    python -m pipeline.shards --csv 'gs://BUCKET/pairs-*.csv' --images gs://BUCKET/images \\
        --out gs://BUCKET/shards --runner DataflowRunner --project PROJECT --region REGION \\
        --temp_location gs://BUCKET/tmp --setup_file ./setup.py

Flags, checks, errors and exit statuses are the launcher's (`pipeline.launcher`): bad
invocations fail with one `error:` line and exit status 2 before any work starts; a job that
fails prints one `error:` line and exits 1, leaving no metadata.json; a finished job prints
counts per split and label, rejections by reason and rows/s, and exits 1 if rows read ≠
examples written + rows rejected.
"""

from __future__ import annotations

from pipeline import features, launcher
from pipeline.inputs.rows import REJECTED_FILE
from pipeline.shards.settings import JobSettings, load_tokenizer


def summary(metadata: dict) -> str:
    """The end-of-job report printed to stdout (the launcher adds rows/s)."""
    labels = metadata["labels"]
    lines = [f"{'split':<8}" + "".join(f"{name:>15}" for name in labels) + f"{'total':>10}"]
    for split, counts in metadata["counts"].items():
        lines.append(f"{split:<8}" + "".join(f"{counts[name]:>15}" for name in labels) + f"{counts['total']:>10}")
    lines.append(
        f"rows read {metadata['rows_read']} = written {metadata['examples_written']} "
        f"+ rejected {metadata['rows_rejected']}"
    )
    for reason, count in metadata["rejected_by_reason"].items():
        lines.append(f"  rejected {reason}: {count}")
    tokens = metadata.get("pair_tokens", {})
    cut = sum(stats["truncated"] for stats in tokens.values())
    pairs = sum(stats["pairs"] for stats in tokens.values())
    if pairs:
        lines.append(f"text pairs cut at --seq-length {metadata['seq_length']}: {cut} of {pairs} ({cut / pairs:.1%}); "
                     f"95% of train pairs have at most {tokens['train']['p95']} tokens (pipeline.preview shows more)")
    return "\n".join(lines)


JOB = launcher.BeamJob(
    prog="python -m pipeline.shards",
    description="Tweet-pair CSV + images → TFRecord shards (Apache Beam).",
    settings_class=JobSettings,
    columns=features.CSV_COLUMNS,
    outputs=(f"*{features.SHARD_SUFFIX}", REJECTED_FILE),
    completion_file=features.METADATA_FILE,
    accounted="examples_written",
    prepare=load_tokenizer,
    transform="pipeline.shards.job:BuildShards",
    summary=summary,
)


# Runs the job and returns metadata.json's contents, raising UsageError or JobFailed; and the
# command line, which reports those as one `error:` line.
run = JOB.run
main = JOB.main
