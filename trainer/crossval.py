"""`python -m trainer.crossval --folds K`: K models, each tested on one fold of all the pairs.

    python -m trainer.crossval --folds 5 --data-dir data/shards --job-dir out/cv \\
        --text-encoder data/encoders/minilm --mode text      # and any other trainer.task flag

On a small data set one split's test figure swings with which pairs happen to land in it (the
real set's test split holds 11 pairs of each minority class); cross-validation tests every
pair once and shows the spread across folds. Folds are stratified and deterministic, from the
shards' own split rule: within each label, pairs are ordered by the seeded hash that orders
them for the splits (`pipeline.shards.stage2_split`), and the pair at position p goes to fold
p mod K. For fold k, the other folds' pairs are split the same way into training and
validation (the shards' `val_fraction` of each label, a different slice for each fold), so
the epoch kept (`--select-by`) is chosen without looking at the fold tested.

With frozen encoders the embedding cache runs them once over every pair, and each fold trains
only a fresh head on the stored outputs: K folds cost one encoder pass plus K head trainings.
Each fold leaves `JOB_DIR/fold-k/metrics.json` (a rerun skips the folds that have one, so a
preempted run continues); `JOB_DIR/crossval.json` holds, for macro-F1, accuracy and each
class's recall, the mean, standard deviation and per-fold figures, and the pooled report of
every pair's one test prediction, with its bootstrap interval.
"""

from __future__ import annotations

import collections
import os
import statistics
import sys

from pipeline import cli
from pipeline.features import stable_hash
from trainer import config as trainer_config

ROLES = ("train", "val", "test")
RESULT_FILE = "crossval.json"
RUN_FILE = "crossval_run.json"  # What the folds in the job dir were trained with.


def fold_roles(pairs: list[tuple[str, int]], folds: int, seed: int, val_fraction: float) -> list[dict[str, str]]:
    """For each fold, every pair key's role: `test` (the fold), `val` or `train` (the rest)."""
    by_label = collections.defaultdict(list)
    for key, label in pairs:
        by_label[label].append(key)
    roles: list[dict[str, str]] = [{} for _ in range(folds)]
    for keys in by_label.values():
        ordered = sorted(keys, key=lambda key: (stable_hash(key, seed), key))
        for fold in range(folds):
            rest = [key for position, key in enumerate(ordered) if position % folds != fold]
            start = fold * len(rest) // folds  # Each fold validates on another slice of the rest.
            rest = rest[start:] + rest[:start]
            n_val = round(len(rest) * val_fraction)
            roles[fold].update({key: "val" if index < n_val else "train" for index, key in enumerate(rest)})
            roles[fold].update({key: "test" for position, key in enumerate(ordered) if position % folds == fold})
    return roles


class FoldSource:
    """A training source (`reader.ShardSource` or the embedding cache) regrouped by one fold's
    roles: its `dataset("train" | "val" | "test", ...)` and `examples(...)` read every split's
    pairs and keep those of that role."""

    def __init__(self, base, roles: dict[str, str]):
        import tensorflow as tf

        keys = tf.constant(list(roles))
        values = tf.constant([ROLES.index(role) for role in roles.values()], tf.int64)
        self._base = base
        self._table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)

    def dataset(self, split: str, batch_size: int | None, training: bool, seed: int | None = None, input_context=None):
        import tensorflow as tf

        role = ROLES.index(split)
        dataset = self._base.pairs(training, seed, input_context)
        dataset = dataset.filter(lambda inputs, label, key: tf.equal(self._table.lookup(key), role))
        dataset = dataset.map(lambda inputs, label, key: (inputs, label))
        if batch_size:
            dataset = dataset.batch(batch_size, drop_remainder=training)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def examples(self, split: str):
        return self.dataset(split, None, training=False)


def summary(fold_results: list[dict], pooled: dict) -> dict:
    """crossval.json: mean, standard deviation and per-fold figures, and the pooled report."""
    from pipeline import features

    def spread(values: list[float]) -> dict:
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "per_fold": values}

    tests = [result["test"] for result in fold_results]
    return {
        "folds": len(fold_results),
        "macro_f1": spread([test["macro_f1"] for test in tests]),
        "accuracy": spread([test["accuracy"] for test in tests]),
        "per_class_recall": {name: spread([test["per_class"][name]["recall"] for test in tests])
                             for name in features.LABELS},
        "selected_epochs": [result["selected_epoch"] for result in fold_results],
        "pooled": pooled,
    }


def table(result: dict) -> str:
    """The printed table: one line per fold, then mean ± std and the pooled figures."""
    from pipeline import features, metrics

    names = features.LABELS
    lines = [f"{'fold':<10}{'macro-F1':>13}{'accuracy':>13}" + "".join(f"{'recall ' + name:>21}" for name in names)
             + f"{'epoch kept':>12}"]
    for fold in range(result["folds"]):
        recalls = "".join(f"{result['per_class_recall'][name]['per_fold'][fold]:>21.3f}" for name in names)
        lines.append(f"{fold:<10}{result['macro_f1']['per_fold'][fold]:>13.3f}{result['accuracy']['per_fold'][fold]:>13.3f}"
                     f"{recalls}{result['selected_epochs'][fold]:>12}")
    mean_std = lambda spread: f"{spread['mean']:.3f}±{spread['std']:.3f}"  # noqa: E731
    lines.append(f"{'mean±std':<10}{mean_std(result['macro_f1']):>13}{mean_std(result['accuracy']):>13}"
                 + "".join(f"{mean_std(result['per_class_recall'][name]):>21}" for name in names))
    lines.append(metrics.format_table("pooled (every pair tested once)", result["pooled"]))
    return "\n".join(lines)


def parse(argv: list[str] | None):
    parser = trainer_config.define_flags()
    parser.prog = "python -m trainer.crossval"
    parser.description = __doc__.split("\n")[0].split(": ", 1)[1]
    parser.add_argument_group("cross-validation").add_argument(
        "--folds", type=int, default=5, help="folds K: K models, each tested on one fold (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.folds < 2:
        raise cli.UsageError("--folds must be at least 2")
    train, model_config = trainer_config.configs_from_args(args)
    return train, model_config, args.folds


def main(argv: list[str] | None = None) -> dict:
    train, model_config, folds = parse(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cli.import_tensorflow()
    import keras

    from model import multimodal
    from pipeline import metrics
    from trainer import artifacts, distribution, embedding_cache, task

    if distribution.cluster_size() > 1:
        raise cli.UsageError("trainer.crossval runs on one machine (MirroredStrategy over its GPUs at most)")
    job = artifacts.job_dir(train.job_dir)
    strategy = task.start(train)
    metadata, model_config = task.check_shards(train, model_config)
    use_cache = embedding_cache.enabled(train.embedding_cache, model_config)
    with strategy.scope():
        model, _ = task.build_model(train, model_config, use_cache, metadata["class_weights"])
    source = task.input_source(train, model_config, metadata, strategy, model, use_cache, {"job": job}, shared_cache=True)
    pairs = source.labelled_pairs()
    roles = fold_roles(pairs, folds, metadata["splits"]["seed"], metadata["splits"]["val_fraction"])
    labels = dict(pairs)

    check_same_run(job, folds, train, model_config, metadata)
    fold_results = []
    for fold, fold_roles_k in enumerate(roles):
        folder = os.path.join(job, f"fold-{fold}")
        done = os.path.join(folder, "metrics.json")
        if artifacts.read_json(done):
            fold_results.append(artifacts.read_json(done))
            print(f"fold {fold}: done before ({done})")
            continue
        counts = collections.Counter(fold_roles_k.values())
        train_labels = collections.Counter(labels[key] for key, role in fold_roles_k.items() if role == "train")
        class_weights = metrics.class_weights(train_labels)  # The fold's own training pairs.
        print(f"fold {fold}: {counts['train']} train, {counts['val']} val, {counts['test']} test pairs")
        keras.utils.set_random_seed(train.seed + fold)
        with strategy.scope():  # A fresh model; with the cache, a fresh head on the stored outputs.
            if use_cache:
                fit_model = multimodal.create_head(model_config, source.shapes)
                task.compile_for_training(fit_model, train, class_weights)
            else:
                _, fit_model = task.build_model(train, model_config, use_cache, class_weights)
        folders = {name: os.path.join(folder, name) for name in ("checkpoints", "logs")}
        results, trained = task.train_and_evaluate(train, strategy, fit_model, FoldSource(source, fold_roles_k), counts,
                                                   folders["checkpoints"], folders)
        fold_results.append({**results, "selected_epoch": trained["selected_epoch"]})
        artifacts.write_json(done, fold_results[-1])
        artifacts.remove_tree(folders["checkpoints"])

    pooled = metrics.report_of_matrix(sum(_matrix(result["test"]) for result in fold_results))
    result = summary(fold_results, pooled)
    artifacts.write_json(os.path.join(job, RESULT_FILE), result)
    print(table(result))
    print(f"wrote {os.path.join(job, RESULT_FILE)}")
    return result


def check_same_run(job: str, folds: int, train, model_config, metadata: dict) -> None:
    """Records what this cross-validation is (folds, flags, the shards' metadata) in `RUN_FILE`;
    refuses a job dir that holds another one, whose finished folds a rerun would otherwise mix
    with this one's."""
    import dataclasses
    import hashlib
    import json

    from trainer import artifacts

    where = {"job_dir", "embedding_cache", "embedding_cache_dir", "strategy"}  # Same results wherever they run.
    run = {"folds": folds, "train": {k: v for k, v in dataclasses.asdict(train).items() if k not in where},
           "model": dataclasses.asdict(model_config),
           "shards": hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()}
    path = os.path.join(job, RUN_FILE)
    earlier = artifacts.read_json(path)
    if earlier is not None and earlier != json.loads(json.dumps(run)):
        changed = sorted(key for key in run if earlier.get(key) != json.loads(json.dumps(run[key])))
        raise cli.UsageError(f"{job} holds another cross-validation (its {', '.join(changed)} differ): "
                             "give another --job-dir, or delete that one")
    artifacts.write_json(path, run)


def _matrix(report: dict):
    import numpy as np

    return np.array(report["confusion_matrix"], np.int64)


if __name__ == "__main__":
    try:
        main()
    except (cli.UsageError, ValueError, FileNotFoundError) as error:
        sys.exit(cli.report(error))
