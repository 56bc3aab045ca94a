"""`python -m trainer.task`: train, evaluate and save the entailment model from Beam shards.

    python -m trainer.task --data-dir data/shards --job-dir out/run1 \\
        --text-encoder data/encoders/tiny_bert --image-encoder tiny --image-weights none

`--image-size` and `--seq-length` default to the shards' (metadata.json). Where the results
go (locally and on Vertex AI) is in `trainer/artifacts.py`; who runs where (one device,
MirroredStrategy over the GPUs, MultiWorkerMirroredStrategy from `TF_CONFIG`) in
`trainer/distribution.py`. A preempted job rerun with the same flags resumes from its last
backup (`trainer/callbacks.py`): after an epoch, or every `--backup-every-steps` steps; an
interrupted epoch replays its batches from its start.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ errors too; real failures raise in Python.

from pipeline import __version__, cli, logs  # noqa: E402

logs.import_tensorflow()  # Without TF's C++ start-up lines (oneDNN, CUDA, CPU features).
from model.multimodal import ModelConfig  # noqa: E402  Imports Keras, and so TensorFlow.

SCALING_HELP = """\
On a machine with several GPUs, --strategy auto picks MirroredStrategy over all of them, and
on a Vertex AI job with several workers (TF_CONFIG) MultiWorkerMirroredStrategy; add
--mixed-precision on GPUs. --batch-size stays the global batch, split across all replicas,
and --learning-rate is left as given: if you raise the batch with the replica count, choose
the learning rate yourself.
"""
FROM_SHARDS = ("image_size", "seq_length")  # Flags whose default is the shards' metadata.json.


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train (defaults: the published baseline's Adam, batch 32, 10 epochs).

    Attributes:
      data_dir: The `--out` folder of `make shards` (local or gs://).
      job_dir: Where config, metrics, logs, checkpoints and the model go (default: out/job, or on Vertex AI the base output directory).
      epochs: Passes over the training split.
      batch_size: Global batch size, divided across replicas.
      learning_rate: Adam's learning rate.
      loss: `ce`, `weighted-ce` (class weights from metadata.json) or `focal`.
      focal_gamma: Focusing parameter of the focal loss.
      backup_every_steps: Preemption backup interval in steps; 0 backs up once per epoch.
      strategy: `auto`, `default`, `mirrored` or `multiworker`.
      mixed_precision: Compute in float16 with float32 weights and softmax (GPUs).
      seed: Seed for shuffling and initialisation.
      embedding_cache: `auto` (on when every encoder the model uses is frozen), `on` or `off`: run the frozen encoders once and train the head on their stored outputs.
      embedding_cache_dir: Where the cache lives (default: the job dir's embedding_cache/); runs with the same shards and encoders share it.
      serving_tokenizer: The export's tokenizer ops: `fast` (TF Text's fast BERT ops, as the shards job) or `classic` (the same tokens through older ops, for model servers without the fast ones; see the README).
    """

    data_dir: str = "data/shards"
    job_dir: str = ""
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    loss: str = "ce"
    focal_gamma: float = 2.0
    backup_every_steps: int = 0
    strategy: str = "auto"
    mixed_precision: bool = False
    seed: int = 0
    embedding_cache: str = "auto"
    embedding_cache_dir: str = ""
    serving_tokenizer: str = "fast"


def define_flags() -> argparse.ArgumentParser:
    """One flag per config field, named after it, with its docstring line as help."""
    parser = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__.split("\n")[0],
                                     epilog=SCALING_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    for config_class in (TrainConfig, ModelConfig):
        docs = {}
        for line in (config_class.__doc__ or "").splitlines():
            name, _, text = line.strip().partition(":")
            if text and name.isidentifier():
                docs[name] = text.strip()
        group = parser.add_argument_group(config_class.__name__)
        for field in dataclasses.fields(config_class):
            flag = "--" + field.name.replace("_", "-")
            default = None if field.name in FROM_SHARDS else field.default
            shown = "the shards' metadata.json" if field.name in FROM_SHARDS else (field.default if field.default != "" else "see above")
            help_text = f"{docs.get(field.name, '')} (default: {shown})"
            if field.type in ("bool", bool):
                group.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
            else:
                kind = {"int": int, "float": float}.get(str(field.type), str)
                group.add_argument(flag, type=kind, default=default, help=help_text)
    return parser


def parse_configs(argv=None) -> tuple[TrainConfig, ModelConfig]:
    values = vars(define_flags().parse_args(argv))
    pick = lambda cls: cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})  # noqa: E731
    # Image size and sequence length stay None until main() reads them from metadata.json.
    train, model = pick(TrainConfig), pick(ModelConfig)
    if train.loss not in ("ce", "weighted-ce", "focal"):
        raise SystemExit(f"error: --loss must be ce, weighted-ce or focal, not {train.loss!r}")
    from trainer.embedding_cache import SETTINGS as CACHE_SETTINGS

    if train.embedding_cache not in CACHE_SETTINGS:
        raise SystemExit(f"error: --embedding-cache must be one of {', '.join(CACHE_SETTINGS)}, "
                         f"not {train.embedding_cache!r}")
    from pipeline.bert_inputs import TOKENIZER_OPS

    if train.serving_tokenizer not in TOKENIZER_OPS:
        raise SystemExit(f"error: --serving-tokenizer must be one of {', '.join(TOKENIZER_OPS)}, "
                         f"not {train.serving_tokenizer!r}")
    try:
        model.check()
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    return train, model


def focal_loss(gamma: float):
    """Sparse categorical focal loss: cross-entropy down-weighted on easy examples."""
    import keras

    def loss(labels, probabilities):
        labels = keras.ops.cast(keras.ops.reshape(labels, [-1]), "int32")
        probabilities = keras.ops.clip(probabilities, 1e-7, 1.0)
        true_probability = keras.ops.take_along_axis(probabilities, keras.ops.expand_dims(labels, -1), axis=-1)[:, 0]
        return -keras.ops.power(1.0 - true_probability, gamma) * keras.ops.log(true_probability)

    return loss


def load_checked(what: str, load):
    """Runs `load`; a failure (no network, wrong path) becomes one error line with a hint."""
    try:
        return load()
    except (ValueError, FileNotFoundError):
        raise
    except Exception as error:  # noqa: BLE001  URLError, TF's OpError, Keras' download Exception...
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"cannot load the {what}: {first_line} (no network? use a local or gs:// copy of it)") from None


def main(argv=None) -> dict:
    train, model_config = parse_configs(argv)

    # --- Libraries, strategy, folders ----------------------------------------------------
    import keras
    import tensorflow as tf

    from model import encoders, export, multimodal
    from pipeline import features
    from trainer import artifacts, callbacks, distribution, embedding_cache, evaluation, reader, split_eval

    keras.utils.set_random_seed(train.seed)
    if train.mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    strategy = distribution.choose_strategy(train.strategy)
    dirs = artifacts.output_dirs(artifacts.job_dir(train.job_dir))
    chief = distribution.is_chief()
    where = f"; {distribution.task_name()}{' (chief)' if chief else ''}" if distribution.cluster_size() > 1 else ""
    print(f"strategy: {type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s){where}; "
          f"results in {dirs['job']}")

    # --- Data ----------------------------------------------------------------------------
    metadata = reader.read_metadata(train.data_dir)
    model_config = dataclasses.replace(model_config, **{
        name: getattr(model_config, name) if getattr(model_config, name) is not None else metadata[name]
        for name in FROM_SHARDS})
    fingerprint = load_checked(f"text encoder {model_config.text_encoder}",
                               lambda: encoders.vocab_fingerprint_of_encoder(model_config.text_encoder))
    reader.check_metadata(metadata, model_config.shape, fingerprint)
    use_cache = embedding_cache.enabled(train.embedding_cache, model_config)
    # Repeat with a fixed number of steps per epoch: epochs then end exactly at the last full
    # batch, instead of on an end-of-data probe (which tf.data may answer seconds late and Keras
    # counts as one more optimizer step).
    steps_per_epoch = metadata["counts"]["train"]["total"] // train.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"the train split has fewer examples than --batch-size {train.batch_size}")

    # --- Model ---------------------------------------------------------------------------
    with strategy.scope():
        model = load_checked("model's encoders", lambda: multimodal.create_model(model_config))
        # With the embedding cache, fit the head alone: it is part of `model`, so the export
        # below carries what it learnt.
        fit_model = multimodal.head_of(model) if use_cache else model
        loss = focal_loss(train.focal_gamma) if train.loss == "focal" else "sparse_categorical_crossentropy"
        fit_model.compile(optimizer=keras.optimizers.Adam(train.learning_rate), loss=loss, metrics=["accuracy"])

    with distribution.scratch_folder(dirs["job"]) as scratch:
        # Non-chief workers write backups, logs, the export and their cache into their scratch folder.
        mine = dirs if scratch is None else artifacts.output_dirs(scratch)

        # --- Data: the shards, or the frozen encoders' outputs -----------------------------
        if use_cache:
            root = train.embedding_cache_dir if train.embedding_cache_dir and scratch is None else \
                os.path.join(mine["job"], "embedding_cache")
            cache = embedding_cache.EmbeddingCache(strategy, multimodal.encoders_of(model), train.data_dir, metadata,
                                                   model_config, root, train.batch_size)
            cache.ensure()
            batches = lambda size, context=None: cache.dataset(  # noqa: E731
                "train", size, True, seed=train.seed, input_context=context)
            examples = lambda split: lambda: cache.examples(split)  # noqa: E731
        else:
            batches = lambda size, context=None: reader.make_dataset(  # noqa: E731
                train.data_dir, "train", model_config.shape, size, True, seed=train.seed, input_context=context)
            examples = lambda split: split_eval.shard_examples(train.data_dir, split, model_config.shape)  # noqa: E731

        def train_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
            # Each worker reads its own files and batches per replica: distributing one globally
            # batched dataset instead would batch each worker's share by the global batch, and a
            # worker holding fewer examples than that would get no batch at all.
            return batches(context.get_per_replica_batch_size(train.batch_size), context).repeat()

        train_data = strategy.distribute_datasets_from_function(train_dataset)
        predictors = {split: split_eval.SplitPredictor(strategy, examples(split), metadata["counts"][split]["total"],
                                                       train.batch_size)
                      for split in ("val", "test")}
        distribution.prepare_for_fit(fit_model, strategy, batches(train.batch_size).element_spec)

        # --- Train, resuming after preemption --------------------------------------------
        backup = callbacks.ResumableBackup(dirs["checkpoints"], mine["checkpoints"],
                                           save_freq=train.backup_every_steps or "epoch")
        fit_callbacks = [
            callbacks.ValidationMetrics(predictors["val"], train.loss, train.focal_gamma),  # First: the rest see val_*.
            backup,
            keras.callbacks.TensorBoard(mine["logs"]),
        ]
        if os.environ.get(callbacks.KILL_AFTER_STEPS_ENV):  # After the backup, so it is written first.
            fit_callbacks.append(callbacks.KillAfterSteps(int(os.environ[callbacks.KILL_AFTER_STEPS_ENV])))
        class_weight = None
        if train.loss == "weighted-ce":
            class_weight = {i: metadata["class_weights"][name] for i, name in enumerate(features.LABELS)}
        # shuffle=False: the reader (or the cache) shuffles; Keras 3 warns at fit's default True on a Dataset.
        history = fit_model.fit(train_data, epochs=train.epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
                                callbacks=fit_callbacks, class_weight=class_weight, verbose=2)
        print(f"final weights sha256 {artifacts.weights_digest(model)}")

        # --- Evaluate and save (every worker: the passes and saves are collective) -------
        results = {}
        for split, predictor in predictors.items():
            labels, probabilities = predictor.predict(fit_model)
            results[split] = evaluation.classification_report(labels, probabilities.argmax(axis=-1))
            print(evaluation.format_table(split, results[split]))
        callbacks.fault_point("export")
        tf.io.gfile.makedirs(mine["model"])
        model.save_weights(os.path.join(mine["model"], "model.weights.h5"))
        serving_path = export.export(model, os.path.join(mine["model"], "serving"), model_config.text_encoder,
                                     model_config.image_size, model_config.seq_length,
                                     metadata.get("max_pixels", export.DEFAULT_MAX_PIXELS), train.serving_tokenizer)
    if not chief:
        return results
    print(f"exported the serving model to {serving_path}")
    full_history = callbacks.full_history(backup, history)
    evaluation.plot_confusion_matrices(results, os.path.join(dirs["job"], "confusion_matrix.png"))
    evaluation.plot_history(full_history, os.path.join(dirs["job"], "history.png"))
    artifacts.write_json(os.path.join(dirs["job"], "metrics.json"), results)
    artifacts.write_json(os.path.join(dirs["job"], "config.json"), {
        "version": __version__, "train": dataclasses.asdict(train), "model": dataclasses.asdict(model_config),
        "output_dirs": dirs, "data_metadata": metadata, "optimizer_steps": int(fit_model.optimizer.iterations.numpy()),
        "embedding_cache": {"used": use_cache, "folder": cache.folder if use_cache else None},
        "history": full_history})
    # Last: until every artifact is written, a rerun resumes from the backup.
    artifacts.remove_tree(dirs["checkpoints"])
    print(f"wrote metrics.json, config.json and plots to {dirs['job']}")
    return results


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        sys.exit(cli.report(error))
