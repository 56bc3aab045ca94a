"""`python -m trainer.task`: train, evaluate and export the entailment model from Beam shards.

    python -m trainer.task --data-dir data/shards --job-dir out/run1 \\
        --text-encoder data/encoders/tiny_bert --image-encoder tiny --image-weights none

The flags are the fields of `trainer.config.TrainConfig` and `model.config.ModelConfig`;
`--image-size`, `--seq-length`, `--text-pairing` and `--text-pooling` default to the shards'
(metadata.json). `main` reads top to bottom: strategy and folders, data, model, inputs,
training (resuming after preemption, keeping the best epoch), evaluation, export, then the
chief's artifacts; each step is one function below it. Where results go (locally and on
Vertex AI) is `trainer.artifacts`; who runs where is `trainer.distribution`; the backup that
resumes a preempted run is `trainer.callbacks`. Importing this module loads no TensorFlow:
`--help` and flag errors answer at once.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys

from pipeline import __version__, cli
from trainer import config as trainer_config


def main(argv=None) -> dict:
    train, model_config = trainer_config.parse_configs(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ errors too; real failures raise in Python.
    cli.import_tensorflow()  # Without its C++ start-up lines (oneDNN, CUDA, CPU features).
    from trainer import artifacts, distribution, embedding_cache, reader

    # --- Strategy and folders ----------------------------------------------------------------
    strategy = start(train)
    dirs = artifacts.output_dirs(artifacts.job_dir(train.job_dir))
    chief = distribution.is_chief()
    where = f"; {distribution.task_name()}{' (chief)' if chief else ''}" if distribution.cluster_size() > 1 else ""
    print(f"strategy: {type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s){where}; "
          f"results in {dirs['job']}")

    # --- Data: the shards must fit the model; with frozen encoders, the head alone is fitted ---
    metadata, model_config = check_shards(train, model_config)
    use_cache = embedding_cache.enabled(train.embedding_cache, model_config)
    with strategy.scope():
        model, fit_model = build_model(train, model_config, use_cache, metadata["class_weights"])
    counts = {split: metadata["counts"][split]["total"] for split in ("train", "val", "test")}

    with distribution.scratch_folder(dirs["job"]) as scratch:
        # Non-chief workers write backups, logs, the export and their cache into their scratch folder.
        mine = dirs if scratch is None else artifacts.output_dirs(scratch)
        # --- Train (resuming after preemption), keep the best epoch, evaluate --------------------
        with reader.damage_named(train.data_dir, metadata) as sources:  # A corrupt record: name its file.
            source = input_source(train, model_config, metadata, strategy, model, use_cache, mine,
                                  shared_cache=scratch is None)
            sources.cache = source if use_cache else None
            results, trained = train_and_evaluate(train, strategy, fit_model, source, counts, dirs["checkpoints"], mine)
        print(f"final weights sha256 {artifacts.weights_digest(model)}")  # Equal on every worker.

        # --- Export (every worker: saving is collective) -----------------------------------------
        serving_path = save_model(model, mine["model"], model_config, train.serving_tokenizer, metadata)

    # --- The chief's artifacts -----------------------------------------------------------------
    if chief:
        print(f"exported the serving model to {serving_path}")
        write_artifacts(dirs, train, model_config, metadata, results, trained.pop("history"), {
            **trained, "optimizer_steps": int(fit_model.optimizer.iterations.numpy()),
            "embedding_cache": {"used": use_cache, "folder": source.folder if use_cache else None}})
    return results


def start(train):
    """Seeds, the dtype policy, and the distribution strategy (`trainer.distribution`)."""
    import keras

    from trainer import distribution

    keras.utils.set_random_seed(train.seed)
    if train.mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    return distribution.choose_strategy(train.strategy)


def load_checked(what: str, load):
    """Runs `load`; a failure (no network, wrong path) becomes one error line with a hint."""
    try:
        return load()
    except (ValueError, FileNotFoundError):
        raise
    except Exception as error:  # noqa: BLE001  URLError, TF's OpError, Keras' download Exception...
        raise ValueError(f"cannot load the {what}: {cli.first_line(error) or type(error).__name__} (no network? use a "
                         "local or gs:// copy of it)") from None


def check_shards(train, model_config):
    """(metadata.json, the model config with the shards' sizes): refuses shards that do not fit."""
    from model import encoders
    from pipeline import features
    from trainer import reader

    metadata = features.read_metadata(train.data_dir)
    model_config = trainer_config.with_shard_defaults(model_config, metadata)
    if model_config.uses_text:
        print(f"text: {model_config.text_pairing} pairing, {model_config.text_pooling} pooling of each text")
    fingerprint = load_checked(f"text encoder {model_config.text_encoder}",
                               lambda: encoders.vocab_fingerprint_of_encoder(model_config.text_encoder))
    reader.check_metadata(metadata, model_config.shape, fingerprint)
    reader.check_files(train.data_dir, metadata)
    if metadata["counts"]["train"]["total"] < train.batch_size:
        raise ValueError(f"the train split has fewer examples than --batch-size {train.batch_size}")
    return metadata, model_config


def build_model(train, model_config, use_cache: bool, class_weights: dict[str, float]):
    """(the whole model, the model `fit` trains): the head alone with the embedding cache.

    The head is part of the whole model, so the export carries what it learnt.
    """
    from model import multimodal

    model = load_checked("model's encoders", lambda: multimodal.create_model(model_config))
    fit_model = multimodal.head_of(model) if use_cache else model
    compile_for_training(fit_model, train, class_weights)
    return model, fit_model


def compile_for_training(fit_model, train, class_weights: dict[str, float]) -> None:
    """Adam at `--learning-rate` on the loss `--loss` names (`weighted-ce` with the training
    split's balanced `class_weights`, by label name)."""
    import keras

    from model import losses
    from pipeline import features

    loss = losses.for_training(train.loss, train.focal_gamma, class_weights, features.LABELS)
    fit_model.compile(optimizer=keras.optimizers.Adam(train.learning_rate), loss=loss, metrics=["accuracy"])


def input_source(train, model_config, metadata, strategy, model, use_cache: bool, folders: dict, shared_cache: bool):
    """What training reads: the shards, or the frozen encoders' outputs (built or reused here)."""
    from model import multimodal
    from trainer import embedding_cache, reader

    if not use_cache:
        return reader.ShardSource(train.data_dir, model_config.shape)
    root = train.embedding_cache_dir if train.embedding_cache_dir and shared_cache else \
        os.path.join(folders["job"], "embedding_cache")
    cache = embedding_cache.EmbeddingCache(strategy, multimodal.encoders_of(model), train.data_dir, metadata,
                                           model_config, root, train.batch_size)
    cache.ensure()
    return cache


def distributed_inputs(strategy, source, batch_size: int, seed: int, counts: dict[str, int]):
    """(the repeated training batches, a predictor per evaluation split), through the strategy."""
    from trainer import split_eval

    def train_dataset(context):
        # Each worker reads its own files and batches per replica: distributing one globally
        # batched dataset instead would batch each worker's share by the global batch, and a
        # worker holding fewer examples than that would get no batch at all.
        per_replica = context.get_per_replica_batch_size(batch_size)
        return source.dataset("train", per_replica, True, seed=seed, input_context=context).repeat()

    predictors = {split: split_eval.SplitPredictor(strategy, lambda split=split: source.examples(split), counts[split],
                                                   batch_size)
                  for split in ("val", "test")}
    return strategy.distribute_datasets_from_function(train_dataset), predictors


def train_and_evaluate(train, strategy, fit_model, source, counts: dict[str, int], checkpoints_dir: str,
                       folders: dict) -> tuple[dict, dict]:
    """Fits `fit_model` on the source's `train` examples, resuming from `checkpoints_dir`'s backup;
    puts back the epoch `--select-by` picks; returns (a report per evaluation split, what the
    run was: its history and the epoch kept). `folders` are this worker's own (`artifacts`)."""
    import keras

    from trainer import callbacks, distribution

    train_data, predictors = distributed_inputs(strategy, source, train.batch_size, train.seed, counts)
    distribution.prepare_for_fit(fit_model, strategy, source.dataset("train", train.batch_size, True).element_spec)
    backup = callbacks.ResumableBackup(checkpoints_dir, folders["checkpoints"],
                                       save_freq=train.backup_every_steps or "epoch")
    fit_callbacks = [
        callbacks.ValidationMetrics(predictors["val"], train.loss, train.focal_gamma),  # First: the rest see val_*.
        backup,
        keras.callbacks.TensorBoard(folders["logs"]),
    ]
    select_by = train.select_by
    if select_by != "last" and not counts["val"]:
        print(f"warning: the validation split is empty, so --select-by {select_by} cannot choose an epoch; "
              "keeping the last one")
        select_by = "last"
    best = None
    if select_by != "last":
        best = callbacks.BestEpoch(select_by, checkpoints_dir, folders["checkpoints"])
        fit_callbacks.append(best)
    fit_callbacks.append(callbacks.PreemptionSave(strategy, backup))  # Last: the others' epoch-end work is done.
    # A fixed number of steps per epoch over a repeated dataset: epochs end exactly at the last
    # full batch, instead of on an end-of-data probe (which tf.data may answer seconds late and
    # Keras counts as one more optimizer step). shuffle=False: the reader (or the cache) shuffles.
    steps = counts["train"] // train.batch_size
    fit = functools.partial(fit_model.fit, train_data, shuffle=False, callbacks=fit_callbacks, verbose=2)
    epoch, done = callbacks.ResumableBackup.saved_position(checkpoints_dir)
    if 0 < done < steps and epoch < train.epochs:
        # A preempted epoch: finish it with the steps it had left (Keras would redo it whole),
        # on batches drawn anew from the shuffled data.
        print(f"resuming epoch {epoch + 1} at step {done + 1} of {steps}")
        fit(epochs=epoch + 1, steps_per_epoch=steps - done)
    fit(epochs=train.epochs, steps_per_epoch=steps)
    history = backup.history
    epochs = len(history.get("loss", []))
    epoch = (best.restore(fit_model) if best else None) or epochs
    print(f"kept the weights of epoch {epoch} of {epochs} (--select-by {select_by})")
    return evaluate(predictors, fit_model), {"history": history, "select_by": select_by, "selected_epoch": epoch}


def evaluate(predictors: dict, fit_model) -> dict:
    """metrics.json's contents: a classification report per evaluation split, printed too; a
    warning line when every validation pair gets one label."""
    from pipeline import features, metrics

    results = {}
    for split, predictor in predictors.items():
        labels, probabilities = predictor.predict(fit_model)
        results[split] = metrics.classification_report(labels, probabilities.argmax(axis=-1))
        print(metrics.format_table(split, results[split]))
    predicted = [index for index, column in enumerate(zip(*results["val"]["confusion_matrix"])) if sum(column)]
    if len(predicted) == 1 and results["val"]["examples"] > 1:
        print(f"warning: the model predicts {features.LABELS[predicted[0]]} for every validation pair: it has "
              "collapsed onto one class (train with --loss weighted-ce, the default, and more epochs)")
    return results


def save_model(model, model_dir: str, model_config, serving_tokenizer: str, metadata: dict) -> str:
    """The weights, and the serving SavedModel (raw texts and image bytes in); returns its path."""
    import tensorflow as tf

    from model import export
    from pipeline import features

    tf.io.gfile.makedirs(model_dir)
    model.save_weights(os.path.join(model_dir, "model.weights.h5"))
    return export.export(model, os.path.join(model_dir, "serving"), model_config.text_encoder, model_config.shape,
                         metadata.get("max_pixels", features.DEFAULT_MAX_PIXELS), serving_tokenizer)


def write_artifacts(dirs: dict, train, model_config, metadata: dict, results: dict, history: dict, run: dict) -> None:
    """metrics.json, config.json and the plots; then the backup goes, last (until then, a rerun
    resumes from it)."""
    from trainer import artifacts, plots

    plots.plot_confusion_matrices(results, os.path.join(dirs["job"], "confusion_matrix.png"))
    plots.plot_history(history, os.path.join(dirs["job"], "history.png"))
    artifacts.write_json(os.path.join(dirs["job"], "metrics.json"), results)
    artifacts.write_json(os.path.join(dirs["job"], "config.json"), {
        "version": __version__, "train": dataclasses.asdict(train), "model": dataclasses.asdict(model_config),
        "output_dirs": dirs, "data_metadata": metadata, **run, "history": history})
    artifacts.remove_tree(dirs["checkpoints"])
    print(f"wrote metrics.json, config.json and plots to {dirs['job']}")


if __name__ == "__main__":
    try:
        main()
    except (cli.UsageError, ValueError, FileNotFoundError) as error:
        sys.exit(cli.report(error))
