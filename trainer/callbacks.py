"""The trainer's Keras callbacks: validation once per epoch, a backup that resumes anything.

`ValidationMetrics` replaces `fit(validation_data=...)` plus a second pass for macro-F1:
one pass over the validation split (through the strategy, `trainer.split_eval`) gives
`val_loss`, `val_accuracy` and `val_macro_f1`, so the split is read once per epoch.

`ResumableBackup` is Keras' `BackupAndRestore` with three changes, each because a job that
is preempted at any point must redo at most the work since its last backup:
- It keeps the backup when training ends (Keras deletes it by default). A preemption during
  the final evaluation or export then resumes with zero epochs left instead of retraining
  from scratch; the trainer deletes the backup itself once every artifact is written.
- It stores the history of finished epochs beside the weights, so after a restart
  `history.png` and `config.json` still cover every epoch.
- It reads from the chief's backup folder on every worker but writes only to this worker's
  own folder (see `trainer.distribution`), so two workers never write or delete the same files.
It also saves at every epoch end (whatever `save_freq`), so a finished epoch is never redone.
"""

from __future__ import annotations

import json
import os
import time

import keras
import tensorflow as tf

from model import losses
from pipeline import metrics
from trainer import artifacts

HISTORY_FILE = "history.json"


class ValidationMetrics(keras.callbacks.Callback):
    """Adds val_loss, val_accuracy and val_macro_f1 to each epoch's logs, from one pass, and
    epoch_seconds: the epoch's wall time, its training steps and this validation together."""

    def __init__(self, predictor, loss_name: str, focal_gamma: float):
        super().__init__()
        self._predictor = predictor
        self._loss_name = loss_name
        self._focal_gamma = focal_gamma
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        labels, probabilities = self._predictor.predict(self.model)
        report = metrics.classification_report(labels, probabilities.argmax(axis=-1))
        if logs is not None:
            logs["val_loss"] = losses.mean_loss(labels, probabilities, self._loss_name, self._focal_gamma)
            logs["val_accuracy"] = report["accuracy"]
            logs["val_macro_f1"] = report["macro_f1"]
            logs["epoch_seconds"] = time.perf_counter() - self._started


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that keeps its backup and history, reading the chief's, writing its own."""

    def __init__(self, read_dir: str, write_dir: str, save_freq="epoch"):
        super().__init__(write_dir, save_freq=save_freq, double_checkpoint=True, delete_checkpoint=False)
        self._read_dir = read_dir
        self._write_dir = write_dir
        self.restored_history: dict[str, list[float]] = {}
        self._history: dict[str, list[float]] = {}

    def _use(self, folder: str) -> None:
        self.backup_dir = folder
        self._weights_path = os.path.join(folder, "latest.weights.h5")
        self._training_metadata_path = os.path.join(folder, "training_metadata.json")
        self._prev_weights_path = self._weights_path + ".bkp"
        self._prev_training_metadata_path = self._training_metadata_path + ".bkp"

    def on_train_begin(self, logs=None):
        self._use(self._read_dir)
        super().on_train_begin(logs)
        self._use(self._write_dir)
        epochs_done = self.model._initial_epoch or 0
        path = os.path.join(self._read_dir, HISTORY_FILE)
        if epochs_done and tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as handle:
                stored = json.load(handle)
            # The history may hold an epoch whose backup was not written (killed in between).
            self.restored_history = {key: values[:epochs_done] for key, values in stored.items()}
        self._history = {key: list(values) for key, values in self.restored_history.items()}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self._history.setdefault(key, []).append(float(value))
        artifacts.write_json(os.path.join(self._write_dir, HISTORY_FILE), self._history)
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        self._save_model()


def full_history(backup: ResumableBackup, history: keras.callbacks.History) -> dict[str, list[float]]:
    """Epochs from before a restart followed by this run's epochs."""
    merged = {key: list(values) for key, values in backup.restored_history.items()}
    for key, values in history.history.items():
        merged.setdefault(key, []).extend(float(value) for value in values)
    return merged
