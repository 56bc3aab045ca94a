"""`python -m trainer.task`: train, evaluate and save the entailment model from Beam shards.

    python -m trainer.task --data-dir data/shards --job-dir out/run1 \\
        --text-encoder data/encoders/tiny_bert --image-encoder tiny --image-weights none

On Vertex AI the same command runs as a Python package or custom container; `AIP_MODEL_DIR`,
`AIP_CHECKPOINT_DIR` and `AIP_TENSORBOARD_LOG_DIR` override the folders under `--job-dir`.
The strategy is chosen from the machine: MultiWorkerMirroredStrategy when `TF_CONFIG` names
several workers, MirroredStrategy with several local GPUs, the default strategy otherwise.
`--batch-size` is the global batch (split across replicas).

Writes to the job dir: `config.json` (every flag, the data metadata, the version),
`metrics.json` (val and test: accuracy, macro-F1, per-class P/R/F1, confusion matrix, majority
baseline), `confusion_matrix.png`, `history.png` (loss and validation macro-F1 per epoch),
`model/model.weights.h5`, `model/serving/` (SavedModel on raw texts and image bytes,
see `model/export.py`), TensorBoard logs; resumes from `checkpoints/` after a
preemption (Keras BackupAndRestore: weights, optimizer state and epoch; an interrupted epoch
restarts from its first batch; `--backup-every-steps N` bounds the work lost to N steps of
weights and optimizer state, the interrupted epoch's batches are replayed from its start).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from model.multimodal import ModelConfig  # noqa: E402
from pipeline import __version__  # noqa: E402


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train (defaults: the published baseline's Adam, batch 32, 10 epochs).

    Attributes:
      data_dir: The `--out` folder of `make shards` (local or gs://).
      job_dir: Where config, metrics, logs, checkpoints and the model go.
      epochs: Passes over the training split.
      batch_size: Global batch size, divided across replicas.
      learning_rate: Adam's learning rate.
      loss: `ce`, `weighted-ce` (class weights from metadata.json) or `focal`.
      focal_gamma: Focusing parameter of the focal loss.
      backup_every_steps: Preemption backup interval in steps; 0 backs up once per epoch.
      strategy: `auto`, `default`, `mirrored` or `multiworker`.
      mixed_precision: Compute in float16 with float32 weights and softmax (GPUs).
      seed: Seed for shuffling and initialisation.
    """

    data_dir: str = "data/shards"
    job_dir: str = "out/job"
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    loss: str = "ce"
    focal_gamma: float = 2.0
    backup_every_steps: int = 0
    strategy: str = "auto"
    mixed_precision: bool = False
    seed: int = 0


def define_flags() -> argparse.ArgumentParser:
    """One flag per config field, named after it, with its docstring line as help."""
    parser = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__.split("\n")[0])
    for config_class in (TrainConfig, ModelConfig):
        docs = {}
        for line in (config_class.__doc__ or "").splitlines():
            name, _, text = line.strip().partition(":")
            if text and name.isidentifier():
                docs[name] = text.strip()
        group = parser.add_argument_group(config_class.__name__)
        for field in dataclasses.fields(config_class):
            flag = "--" + field.name.replace("_", "-")
            help_text = f"{docs.get(field.name, '')} (default: {field.default})"
            if field.type in ("bool", bool):
                group.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
            else:
                kind = {"int": int, "float": float}.get(str(field.type), str)
                group.add_argument(flag, type=kind, default=field.default, help=help_text)
    return parser


def parse_configs(argv=None) -> tuple[TrainConfig, ModelConfig]:
    values = vars(define_flags().parse_args(argv))
    pick = lambda cls: cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})  # noqa: E731
    train, model = pick(TrainConfig), pick(ModelConfig)
    if train.loss not in ("ce", "weighted-ce", "focal"):
        raise SystemExit(f"error: --loss must be ce, weighted-ce or focal, not {train.loss!r}")
    try:
        model.check()
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    return train, model


def output_dirs(job_dir: str) -> dict[str, str]:
    """Vertex AI's AIP_* folders when set, otherwise folders under --job-dir."""
    return {
        "model": os.environ.get("AIP_MODEL_DIR") or os.path.join(job_dir, "model"),
        "checkpoints": os.environ.get("AIP_CHECKPOINT_DIR") or os.path.join(job_dir, "checkpoints"),
        "logs": os.environ.get("AIP_TENSORBOARD_LOG_DIR") or os.path.join(job_dir, "logs"),
        "job": job_dir,
    }


def choose_strategy(name: str):
    import tensorflow as tf

    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = len(tf_config.get("cluster", {}).get("worker", [])) + len(tf_config.get("cluster", {}).get("chief", []))
    if name == "auto":
        if workers > 1:
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise SystemExit(f"error: --strategy must be auto, default, mirrored or multiworker, not {name!r}")


def is_chief() -> bool:
    """Only the chief writes final artifacts under multi-worker training."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task, cluster = tf_config.get("task", {}), tf_config.get("cluster", {})
    if not task:
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index", 0) == 0


def focal_loss(gamma: float):
    """Sparse categorical focal loss: cross-entropy down-weighted on easy examples."""
    import keras

    def loss(labels, probabilities):
        labels = keras.ops.cast(keras.ops.reshape(labels, [-1]), "int32")
        probabilities = keras.ops.clip(probabilities, 1e-7, 1.0)
        true_probability = keras.ops.take_along_axis(probabilities, keras.ops.expand_dims(labels, -1), axis=-1)[:, 0]
        return -keras.ops.power(1.0 - true_probability, gamma) * keras.ops.log(true_probability)

    return loss


KILL_AFTER_STEPS_ENV = "TRAINER_TEST_KILL_AFTER_STEPS"


def kill_after_steps_callback(steps: int):
    """Fault injection for the resume test: SIGKILL this process after `steps` training batches."""
    import signal

    import keras

    class KillAfterSteps(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = 0

        def on_train_batch_end(self, batch, logs=None):
            self.seen += 1
            if self.seen >= steps:
                os.kill(os.getpid(), signal.SIGKILL)

    return KillAfterSteps()


def macro_f1_callback(val_data):
    """Adds `val_macro_f1` to each epoch's logs (History, TensorBoard, history.png)."""
    import keras

    from trainer import evaluation

    class ValidationMacroF1(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["val_macro_f1"] = evaluation.classification_report(*predict_split(self.model, val_data))["macro_f1"]

    return ValidationMacroF1()


def predict_split(model, dataset):
    import numpy as np

    labels, predictions = [], []
    for inputs, batch_labels in dataset:
        labels.append(batch_labels.numpy())
        predictions.append(np.argmax(model(inputs, training=False).numpy(), axis=-1))
    if not labels:
        return np.zeros([0], int), np.zeros([0], int)
    return np.concatenate(labels), np.concatenate(predictions)


def main(argv=None) -> dict:
    train, model_config = parse_configs(argv)

    # --- Libraries and strategy ----------------------------------------------------------
    import keras
    import tensorflow as tf

    from model import encoders, export, multimodal
    from pipeline import features
    from trainer import evaluation, reader

    keras.utils.set_random_seed(train.seed)
    if train.mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    strategy = choose_strategy(train.strategy)
    dirs = output_dirs(train.job_dir)
    print(f"strategy: {type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s)")

    # --- Data ----------------------------------------------------------------------------
    metadata = reader.read_metadata(train.data_dir)
    reader.check_metadata(metadata, model_config.shape, encoders.vocab_fingerprint_of_encoder(model_config.text_encoder))

    def dataset(split, training):
        return reader.make_dataset(train.data_dir, split, model_config.shape, train.batch_size, training, seed=train.seed)

    # Repeat with a fixed number of steps per epoch: epochs then end exactly at the last full
    # batch, instead of on an end-of-data probe (which tf.data may answer seconds late and Keras
    # counts as one more optimizer step).
    steps_per_epoch = metadata["counts"]["train"]["total"] // train.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"the train split has fewer examples than --batch-size {train.batch_size}")
    train_data = dataset("train", True).repeat()
    val_data = dataset("val", False)

    # --- Model ---------------------------------------------------------------------------
    with strategy.scope():
        model = multimodal.create_model(model_config)
        loss = focal_loss(train.focal_gamma) if train.loss == "focal" else "sparse_categorical_crossentropy"
        model.compile(optimizer=keras.optimizers.Adam(train.learning_rate), loss=loss, metrics=["accuracy"])

    # --- Train, resuming after preemption ------------------------------------------------
    callbacks = [
        macro_f1_callback(val_data),  # First, so the callbacks after it see val_macro_f1.
        keras.callbacks.BackupAndRestore(dirs["checkpoints"], save_freq=train.backup_every_steps or "epoch"),
        keras.callbacks.TensorBoard(dirs["logs"]),
    ]
    if os.environ.get(KILL_AFTER_STEPS_ENV):  # After BackupAndRestore, so the backup is written first.
        callbacks.append(kill_after_steps_callback(int(os.environ[KILL_AFTER_STEPS_ENV])))
    class_weight = None
    if train.loss == "weighted-ce":
        class_weight = {i: metadata["class_weights"][name] for i, name in enumerate(features.LABELS)}
    history = model.fit(train_data, validation_data=val_data, epochs=train.epochs, steps_per_epoch=steps_per_epoch,
                        callbacks=callbacks,
                        class_weight=class_weight, verbose=2)

    # --- Evaluate and save ---------------------------------------------------------------
    results = {}
    for split in ("val", "test"):
        results[split] = evaluation.classification_report(*predict_split(model, dataset(split, False)))
        print(evaluation.format_table(split, results[split]))
    if is_chief():
        tf.io.gfile.makedirs(dirs["model"])
        model.save_weights(os.path.join(dirs["model"], "model.weights.h5"))
        serving_path = export.export(model, os.path.join(dirs["model"], "serving"), model_config.text_encoder,
                                     model_config.image_size, model_config.seq_length)
        print(f"exported the serving model to {serving_path}")
        evaluation.plot_confusion_matrices(results, os.path.join(dirs["job"], "confusion_matrix.png"))
        evaluation.plot_history(history.history, os.path.join(dirs["job"], "history.png"))
        with tf.io.gfile.GFile(os.path.join(dirs["job"], "metrics.json"), "w") as handle:
            json.dump(results, handle, indent=2)
        with tf.io.gfile.GFile(os.path.join(dirs["job"], "config.json"), "w") as handle:
            json.dump({"version": __version__, "train": dataclasses.asdict(train), "model": dataclasses.asdict(model_config),
                       "data_metadata": metadata, "optimizer_steps": int(model.optimizer.iterations.numpy()), "history": {k: [float(x) for x in v] for k, v in history.history.items()}},
                      handle, indent=2)
    return results


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
