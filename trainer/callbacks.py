"""The trainer's Keras callbacks: validation once per epoch, the best epoch kept, a backup that
resumes anything.

`ValidationMetrics` replaces `fit(validation_data=...)` plus a second pass for macro-F1:
one pass over the validation split (through the strategy, `trainer.split_eval`) gives
`val_loss`, `val_accuracy` and `val_macro_f1`, so the split is read once per epoch.

`ResumableBackup` is Keras' `BackupAndRestore` with four changes, each because a job that
is preempted at any point must redo at most the work since its last backup:
- It keeps the backup when training ends (Keras deletes it by default). A preemption during
  the final evaluation or export then resumes with zero epochs left instead of retraining
  from scratch; the trainer deletes the backup itself once every artifact is written.
- It stores the history of finished epochs beside the weights, so after a restart
  `history.png` and `config.json` still cover every epoch.
- It reads from the chief's backup folder on every worker but writes only to this worker's
  own folder (see `trainer.distribution`), so two workers never write or delete the same files.
- It records how many steps of the epoch were done at a save, which Keras does not use (it
  restarts an interrupted epoch from its first step); the trainer finishes the epoch instead
  (`trainer.task.train_and_evaluate`), so a finished step is never redone.
It also saves at every epoch end (whatever `save_freq`), so a finished epoch is never redone.

`PreemptionSave` turns a preemption notice (SIGTERM) into a backup at a step every worker
agrees on, then exits with `PREEMPTED_STATUS` for the platform to restart the job.

`BestEpoch` is Keras' `ModelCheckpoint` keeping the weights of the best validation epoch
(`--select-by`), which `restore` puts back before evaluation and export. After a restart it
starts from its own record of the best epoch so far, so an earlier, better epoch still wins.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import keras
import tensorflow as tf

from model import losses
from pipeline import metrics
from trainer import artifacts, distribution

HISTORY_FILE = "history.json"
# What a process killed by SIGTERM reports (128 + 15): a preempted trainer exits with it after
# saving, so whatever restarts preempted processes (Vertex AI restarts a worker that exits
# non-zero, a shell loop, Kubernetes) restarts this one the same way.
PREEMPTED_STATUS = 143
BEST_FOLDER = "best"  # Under the checkpoints folder: BackupAndRestore's own folder is not shared.
BEST_FILE = "epoch-{epoch:04d}.weights.h5"
BEST_RECORD = "best.json"
# `--select-by` (`trainer.config.SELECTIONS`) → the way its log value improves.
MODES = {"val_macro_f1": "max", "val_loss": "min"}


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
        self.history: dict[str, list[float]] = {}  # Every epoch's logs, those before a restart first.
        self._steps_before = 0  # Steps of the current epoch done before this fit (a resumed epoch).
        self._steps_done = 0  # Steps of the current epoch done so far.
        self._restored = False

    def _use(self, folder: str) -> None:
        self.backup_dir = folder
        self._weights_path = os.path.join(folder, "latest.weights.h5")
        self._training_metadata_path = os.path.join(folder, "training_metadata.json")
        self._prev_weights_path = self._weights_path + ".bkp"
        self._prev_training_metadata_path = self._training_metadata_path + ".bkp"

    @staticmethod
    def saved_position(folder: str) -> tuple[int, int]:
        """(epoch, steps of it done) at the backup in `folder`; (0, 0) without one."""
        metadata = artifacts.read_json(os.path.join(folder, "training_metadata.json")) or {}
        return int(metadata.get("epoch", 0)), int(metadata.get("batch", 0))

    def on_train_begin(self, logs=None):
        if self._restored:  # A later fit of this run: the model is as the last one left it.
            self.model._initial_epoch = self._current_epoch
            return
        self._restored = True
        self._use(self._read_dir)
        super().on_train_begin(logs)
        self._use(self._write_dir)
        epochs_done = self.model._initial_epoch or 0
        self._current_epoch = epochs_done
        self._steps_before = self.saved_position(self._read_dir)[1]
        path = os.path.join(self._read_dir, HISTORY_FILE)
        if epochs_done and tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as handle:
                stored = json.load(handle)
            # The history may hold an epoch whose backup was not written (killed in between).
            self.restored_history = {key: values[:epochs_done] for key, values in stored.items()}
        self.history = {key: list(values) for key, values in self.restored_history.items()}

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch  # Keras sets it at epoch ends only; a save mid-epoch needs it.

    def on_train_batch_end(self, batch, logs=None):
        self._steps_done = self._steps_before + batch + 1
        if not _last_step(self, batch):  # The epoch end saves after the last step (a full epoch, not a position).
            super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        artifacts.write_json(os.path.join(self._write_dir, HISTORY_FILE), self.history)
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        self._steps_before = self._steps_done = 0
        self._save_model()

    def _save_model(self):
        super()._save_model()
        # Keras records the epoch; the steps of it done are recorded too, for the trainer to
        # finish the epoch after a restart instead of redoing it.
        artifacts.write_json(self._training_metadata_path, {"epoch": self._current_epoch, "batch": self._steps_done})

    def save_now(self) -> tuple[int, int]:
        """Writes the backup at the current step; returns (epoch, steps of it done)."""
        self._save_model()
        return self._current_epoch, self._steps_done


class PreemptionSave(keras.callbacks.Callback):
    """On SIGTERM, finishes the step, saves the backup on every worker at the same step, and
    exits with `PREEMPTED_STATUS`; the rerun resumes from that step.

    Vertex AI and Compute Engine send SIGTERM about 30 s before they stop a preempted VM.
    Why not `tf.distribute.experimental.PreemptionCheckpointHandler`: it is made for custom
    training loops and `tf.train.Checkpoint`s, and on Google Cloud it ignores SIGTERM (on GPU
    VMs it watches maintenance events instead; on CPU VMs it does nothing at all). Here every
    worker checks, after each step, whether any worker got the notice: one scalar all-reduce
    per step under several workers (`distribution.any_worker`), a flag read on one machine.
    A notice during an epoch's last step or its validation is acted on at the epoch end, after
    the backup's own epoch-end save, so the rerun starts the next epoch rather than redoing this
    one; a notice after the last epoch, when `fit` ends: the rerun then only evaluates and
    exports. Before `fit` (the cache's pass) and after it SIGTERM keeps its default: the rerun
    then redoes the cache's pass, or the evaluation and export.
    """

    def __init__(self, strategy, backup: ResumableBackup):
        super().__init__()
        self._strategy, self._backup = strategy, backup
        self._notice = threading.Event()
        self._previous = None

    def on_train_begin(self, logs=None):
        self._previous = signal.signal(signal.SIGTERM, lambda signum, frame: self._notice.set())

    def on_train_batch_end(self, batch, logs=None):
        if not _last_step(self, batch) and self._noticed():
            epoch, steps = self._backup.save_now()
            self._exit(f"saved the backup at epoch {epoch + 1}, step {steps}")

    def on_epoch_end(self, epoch, logs=None):
        if self._noticed():  # The backup has saved this epoch's end already (it runs before).
            self._exit(f"the backup holds epoch {epoch + 1}, finished")

    def on_train_end(self, logs=None):
        noticed = self._noticed()
        signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
        if noticed:
            self._exit("training had finished; the backup holds every epoch")

    def _noticed(self) -> bool:
        """Whether any worker got the notice; every worker calls this at the same points."""
        return distribution.any_worker(self._strategy, self._notice.is_set())

    @staticmethod
    def _exit(what: str):
        print(f"preempted: {what}; exiting with status {PREEMPTED_STATUS} so that the job restarts and resumes "
              "from there", flush=True)
        sys.exit(PREEMPTED_STATUS)


def _last_step(callback: keras.callbacks.Callback, batch: int) -> bool:
    """Whether `batch` is the last step of the epoch `fit` runs."""
    return batch + 1 == (callback.params or {}).get("steps")


class BestEpoch(keras.callbacks.ModelCheckpoint):
    """Saves the weights at each epoch that beats every earlier one on `monitor`; `restore`
    loads the best epoch's weights and says which epoch it was (1-based).

    Each best epoch's weights go to their own file, and `BEST_RECORD` (written after them, by a
    rename) names the file, its epoch and its value: a kill at any moment leaves a record whose
    file holds that epoch's weights. Like `ResumableBackup`, it writes into this worker's own
    folder and, after a restart, reads what an earlier life of the job wrote from the chief's.
    """

    def __init__(self, monitor: str, read_dir: str, write_dir: str):
        self._write_folder = os.path.join(write_dir, BEST_FOLDER)
        super().__init__(os.path.join(self._write_folder, BEST_FILE), monitor=monitor, mode=MODES[monitor],
                         save_best_only=True, save_weights_only=True)
        self._read_folder = os.path.join(read_dir, BEST_FOLDER)
        self._record: dict | None = None  # {"epoch", "value", "path"} of the best epoch so far.
        self._started = False

    def on_train_begin(self, logs=None):
        if self._started:  # A later fit of this run: `best` is up to date.
            return
        self._started = True
        self._record = artifacts.read_json(os.path.join(self._read_folder, BEST_RECORD))
        if self._record:
            self.best = self._record["value"]

    def on_epoch_end(self, epoch, logs=None):
        before = self.best
        super().on_epoch_end(epoch, logs)  # Saves to `filepath` (formatted with the epoch) if it improved.
        if self.best == before:
            return
        path = self.filepath.format(epoch=epoch + 1)
        earlier, self._record = self._record, {"epoch": epoch + 1, "value": float(self.best), "path": path}
        artifacts.write_json(os.path.join(self._write_folder, BEST_RECORD), self._record)
        if earlier and os.path.dirname(earlier["path"]) == self._write_folder and tf.io.gfile.exists(earlier["path"]):
            tf.io.gfile.remove(earlier["path"])  # Only this worker's own files.

    def restore(self, model) -> int | None:
        """Loads the best epoch's weights; its number, or None when no epoch had a value."""
        if not self._record:
            return None
        model.load_weights(self._record["path"])
        return self._record["epoch"]
