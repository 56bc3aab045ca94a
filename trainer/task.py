"""`python -m trainer.task`: train, evaluate and export the entailment model from Beam shards.

    python -m trainer.task --data-dir data/shards --job-dir out/run1 \\
        --text-encoder data/encoders/tiny_bert --image-encoder tiny --image-weights none

The flags are the fields of `trainer.config.TrainConfig` and `model.config.ModelConfig`;
`--image-size` and `--seq-length` default to the shards' (metadata.json). `main` reads top to
bottom: strategy and folders, data, model, inputs, training (resuming after preemption),
evaluation and export, then the chief's artifacts; each step is one function below it. Where
results go (locally and on Vertex AI) is `trainer.artifacts`; who runs where is
`trainer.distribution`; the backup that resumes a preempted run is `trainer.callbacks`.
Importing this module loads no TensorFlow: `--help` and flag errors answer at once.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from pipeline import __version__, cli
from trainer import config as trainer_config


def main(argv=None) -> dict:
    train, model_config = trainer_config.parse_configs(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ errors too; real failures raise in Python.
    cli.import_tensorflow()  # Without its C++ start-up lines (oneDNN, CUDA, CPU features).
    from trainer import artifacts, callbacks, distribution, embedding_cache

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
        model, fit_model = build_model(train, model_config, use_cache)

    with distribution.scratch_folder(dirs["job"]) as scratch:
        # Non-chief workers write backups, logs, the export and their cache into their scratch folder.
        mine = dirs if scratch is None else artifacts.output_dirs(scratch)
        source = input_source(train, model_config, metadata, strategy, model, use_cache, mine, shared_cache=scratch is None)
        train_data, predictors = distributed_inputs(strategy, source, train.batch_size, train.seed, metadata)
        distribution.prepare_for_fit(fit_model, strategy, source.dataset("train", train.batch_size, True).element_spec)

        # --- Train, resuming after preemption ----------------------------------------------------
        backup = callbacks.ResumableBackup(dirs["checkpoints"], mine["checkpoints"],
                                           save_freq=train.backup_every_steps or "epoch")
        history = fit(train, fit_model, train_data, predictors["val"], backup, mine["logs"], metadata)
        print(f"final weights sha256 {artifacts.weights_digest(model)}")  # Equal on every worker.

        # --- Evaluate and export (every worker: the passes and saves are collective) -------------
        results = evaluate(predictors, fit_model)
        serving_path = save_model(model, mine["model"], model_config, train.serving_tokenizer, metadata)

    # --- The chief's artifacts -----------------------------------------------------------------
    if chief:
        print(f"exported the serving model to {serving_path}")
        write_artifacts(dirs, train, model_config, metadata, results, callbacks.full_history(backup, history), {
            "optimizer_steps": int(fit_model.optimizer.iterations.numpy()),
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
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"cannot load the {what}: {first_line} (no network? use a local or gs:// copy of it)") from None


def check_shards(train, model_config):
    """(metadata.json, the model config with the shards' sizes): refuses shards that do not fit."""
    from model import encoders
    from pipeline import features
    from trainer import reader

    metadata = features.read_metadata(train.data_dir)
    model_config = trainer_config.with_shard_defaults(model_config, metadata)
    fingerprint = load_checked(f"text encoder {model_config.text_encoder}",
                               lambda: encoders.vocab_fingerprint_of_encoder(model_config.text_encoder))
    reader.check_metadata(metadata, model_config.shape, fingerprint)
    if metadata["counts"]["train"]["total"] < train.batch_size:
        raise ValueError(f"the train split has fewer examples than --batch-size {train.batch_size}")
    return metadata, model_config


def build_model(train, model_config, use_cache: bool):
    """(the whole model, the model `fit` trains): the head alone with the embedding cache.

    The head is part of the whole model, so the export carries what it learnt.
    """
    import keras

    from model import losses, multimodal

    model = load_checked("model's encoders", lambda: multimodal.create_model(model_config))
    fit_model = multimodal.head_of(model) if use_cache else model
    fit_model.compile(optimizer=keras.optimizers.Adam(train.learning_rate),
                      loss=losses.for_training(train.loss, train.focal_gamma), metrics=["accuracy"])
    return model, fit_model


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


def distributed_inputs(strategy, source, batch_size: int, seed: int, metadata: dict):
    """(the repeated training batches, a predictor per evaluation split), through the strategy."""
    from trainer import split_eval

    def train_dataset(context):
        # Each worker reads its own files and batches per replica: distributing one globally
        # batched dataset instead would batch each worker's share by the global batch, and a
        # worker holding fewer examples than that would get no batch at all.
        per_replica = context.get_per_replica_batch_size(batch_size)
        return source.dataset("train", per_replica, True, seed=seed, input_context=context).repeat()

    predictors = {split: split_eval.SplitPredictor(strategy, lambda split=split: source.examples(split),
                                                   metadata["counts"][split]["total"], batch_size)
                  for split in ("val", "test")}
    return strategy.distribute_datasets_from_function(train_dataset), predictors


def fit(train, fit_model, train_data, val_predictor, backup, logs_dir: str, metadata: dict):
    """Keras `fit` for `train.epochs`, with validation metrics, the backup and TensorBoard."""
    import keras

    from model import losses
    from pipeline import features
    from trainer import callbacks

    fit_callbacks = [
        callbacks.ValidationMetrics(val_predictor, train.loss, train.focal_gamma),  # First: the rest see val_*.
        backup,
        keras.callbacks.TensorBoard(logs_dir),
    ]
    # A fixed number of steps per epoch over a repeated dataset: epochs end exactly at the last
    # full batch, instead of on an end-of-data probe (which tf.data may answer seconds late and
    # Keras counts as one more optimizer step). shuffle=False: the reader (or the cache) shuffles.
    return fit_model.fit(train_data, epochs=train.epochs, steps_per_epoch=metadata["counts"]["train"]["total"] //
                         train.batch_size, shuffle=False, callbacks=fit_callbacks, verbose=2,
                         class_weight=losses.class_weights(train.loss, metadata, features.LABELS))


def evaluate(predictors: dict, fit_model) -> dict:
    """metrics.json's contents: a classification report per evaluation split, printed too."""
    from pipeline import metrics

    results = {}
    for split, predictor in predictors.items():
        labels, probabilities = predictor.predict(fit_model)
        results[split] = metrics.classification_report(labels, probabilities.argmax(axis=-1))
        print(metrics.format_table(split, results[split]))
    return results


def save_model(model, model_dir: str, model_config, serving_tokenizer: str, metadata: dict) -> str:
    """The weights, and the serving SavedModel (raw texts and image bytes in); returns its path."""
    import tensorflow as tf

    from model import export
    from pipeline import features

    tf.io.gfile.makedirs(model_dir)
    model.save_weights(os.path.join(model_dir, "model.weights.h5"))
    return export.export(model, os.path.join(model_dir, "serving"), model_config.text_encoder, model_config.image_size,
                         model_config.seq_length, metadata.get("max_pixels", features.DEFAULT_MAX_PIXELS),
                         serving_tokenizer)


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
