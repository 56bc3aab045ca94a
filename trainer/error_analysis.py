"""`python -m trainer.error_analysis JOB_DIR`: the test pairs the model gets wrong, most confident first.

Scores a split of the job's shards (test by default) with the job's exported serving model,
the artifact users deploy, from what the shards store: both texts and both stored images. It
writes `JOB_DIR/errors.png`, a grid of the misclassified pairs (their own two images, texts,
true and predicted label, probabilities), sorted by the probability the model gave its wrong
answer, so the first pairs are where it is most sure and most wrong; and `errors.jsonl`, every
misclassified pair in that order (ids, labels, probabilities), for a user to look up.

The count is checked against `metrics.json`: the trainer scored the same split with the
model in memory, so the two disagree only if export and training see different inputs
(training/serving skew), which this command then says.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import os
import sys

from pipeline import cli, features
from pipeline.preview.pair_grid import PairCell, draw_grid, write_png

BATCH = 64
ABBREVIATIONS = {"Contradictory": "Contra", "Implies": "Impl", "NoEntailment": "NoEnt"}  # A cell is ~45 characters wide.


@dataclasses.dataclass(frozen=True)
class Miss:
    """A misclassified pair: what the picture and errors.jsonl show."""

    confidence: float  # The probability of the (wrong) predicted label.
    ids: tuple[str, str]
    true_label: str
    predicted: str
    probabilities: dict[str, float]
    texts: tuple[str, str]
    images: tuple[bytes, bytes]

    def record(self) -> dict:
        return {"ids": list(self.ids), "true_label": self.true_label, "predicted": self.predicted,
                "confidence": round(self.confidence, 4),
                "probabilities": {name: round(p, 4) for name, p in self.probabilities.items()}}

    def cell(self) -> PairCell:
        odds = "  ".join(f"{ABBREVIATIONS.get(name, name)} {p:.2f}" for name, p in self.probabilities.items())
        return PairCell(self.images[0], self.images[1], self.texts[0], self.texts[1],
                        (f"true: {self.true_label}", f"predicted: {self.predicted} ({self.confidence:.2f})", odds))


def read_job(job_dir: str) -> dict:
    """The job's config.json (written last by `trainer.task`), or a ValueError saying what is missing."""
    import tensorflow as tf

    path = os.path.join(job_dir, "config.json")
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{path} not found: give the --job-dir of a finished `python -m trainer.task` run")
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def find_misses(serve, records, keep: int, progress=None) -> tuple[int, list[Miss], list[dict]]:
    """(pairs scored, the `keep` most confident misses, every miss's record), both most confident first.

    `records` yields batches of parsed shard examples (numpy dicts). Only `keep` pairs hold
    their images, in a heap, so a split of any size fits in memory. `progress` (a
    `pipeline.cli.Progress`) hears of every batch scored.
    """
    import tensorflow as tf

    scored, heap, everything = 0, [], []
    for batch in records:
        outputs = serve(**{key: tf.constant(batch[key]) for key in features.RAW_KEYS})
        probabilities = outputs["probabilities"].numpy()
        predicted = probabilities.argmax(axis=-1)
        for row in (predicted != batch[features.LABEL_KEY]).nonzero()[0]:
            miss = Miss(
                float(probabilities[row, predicted[row]]),
                tuple(batch[key][row].decode() for key in features.ID_KEYS),
                features.LABELS[int(batch[features.LABEL_KEY][row])], features.LABELS[int(predicted[row])],
                dict(zip(features.LABELS, map(float, probabilities[row]))),
                tuple(batch[key][row].decode("utf-8", "replace") for key in features.TEXT_KEYS),
                tuple(bytes(batch[key][row]) for key in features.IMAGE_KEYS))
            everything.append(miss.record())
            entry = (miss.confidence, len(everything), miss)  # The counter breaks ties: Miss does not order.
            if len(heap) < keep:
                heapq.heappush(heap, entry)
            elif keep:
                heapq.heappushpop(heap, entry)
        scored += len(predicted)
        if progress is not None:
            progress.tick(len(predicted))
    everything.sort(key=lambda record: -record["confidence"])
    return scored, [miss for _, _, miss in sorted(heap, key=lambda entry: (-entry[0], entry[1]))], everything


def split_batches(data_dir: str, split: str):
    """Batches of a split's stored fields (ids, texts, encoded images, label) as numpy, in file order."""
    from trainer import reader

    keys = features.ID_KEYS + features.RAW_KEYS + (features.LABEL_KEY,)
    dataset = reader.read_records(features.shard_files(data_dir, split), training=False, compression=features.COMPRESSION)
    return dataset.batch(BATCH).map(lambda records: features.parse_stored(records, keys)).as_numpy_iterator()


def skew_note(metrics: dict | None, split: str, misses: int) -> str:
    """What metrics.json says of the same split's errors, and whether it agrees."""
    report = (metrics or {}).get(split)
    if not report:
        return f"no trainer count of these {split} pairs to compare with (metrics.json of the same shards)"
    matrix = report["confusion_matrix"]
    expected = sum(sum(row) for row in matrix) - sum(matrix[i][i] for i in range(len(matrix)))
    if expected == misses:
        return f"the trainer counted {expected} too (metrics.json): the export scores as training did"
    return (f"warning: the trainer counted {expected} (metrics.json): the exported model and the trained one "
            f"disagree on {abs(expected - misses)} or more pairs (training/serving skew?)")


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m trainer.error_analysis", description=__doc__.split("\n")[0])
    parser.add_argument("job_dir", help="the --job-dir of a finished trainer.task run (local or gs://)")
    parser.add_argument("--split", choices=features.SPLITS, default="test", help="split scored (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=16, help="misclassified pairs drawn (default: %(default)s)")
    parser.add_argument("--data-dir", help="the shards (default: the job's --data-dir, from its config.json)")
    parser.add_argument("--model", help="the serving model (default: the job's model/serving)")
    parser.add_argument("--out", help="the picture (default: JOB_DIR/errors.png; errors.jsonl goes beside it)")
    args = cli.parse(parser, argv, lambda args: "--pairs must be 0 or more" if args.pairs < 0 else None)
    if isinstance(args, int):
        return args
    cli.configure_logs(False)
    tf = cli.import_tensorflow()
    from model import export

    try:
        job = read_job(args.job_dir)
        data_dir = args.data_dir or job["train"]["data_dir"]
        model_dir = args.model or os.path.join(job.get("output_dirs", {}).get("model") or os.path.join(args.job_dir, "model"),
                                               "serving")
        if not tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
            raise ValueError(f"{model_dir} holds no saved_model.pb (the job exports it last; did it finish?)")
        metrics_path = os.path.join(args.job_dir, "metrics.json")
        metrics = json.loads(tf.io.gfile.GFile(metrics_path).read()) if tf.io.gfile.exists(metrics_path) else None
        if data_dir != job["train"]["data_dir"]:
            metrics = None  # The trainer counted other shards' errors: nothing to compare with.
        serve = export.load(model_dir)
        scored, misses, records = find_misses(serve, split_batches(data_dir, args.split), args.pairs,
                                              cli.Progress("trainer.error_analysis: pairs scored"))
        out = args.out or os.path.join(args.job_dir, "errors.png")
        title = f"{len(records)} of {scored} {args.split} pairs misclassified" + (
            f"; the {len(misses)} most confident first" if misses else "")
        write_png(draw_grid([miss.cell() for miss in misses], title=title), out)
        listing = os.path.splitext(out)[0] + ".jsonl"
        with tf.io.gfile.GFile(listing, "w") as handle:
            handle.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    except (ValueError, KeyError, OSError, tf.errors.OpError) as error:
        return cli.report(error)
    print(f"{args.split}: {len(records)} of {scored} pairs misclassified; {skew_note(metrics, args.split, len(records))}")
    for record in records[:5]:
        print(f"  {record['true_label']:>13} → {record['predicted']:<13} {record['confidence']:.2f}  ids {' '.join(record['ids'])}")
    print(f"wrote {out} ({len(misses)} pairs) and {listing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
