"""Where a training job's results go, and how they are written (always through tf.io.gfile).

Locally everything lands under `--job-dir` (default `out/job`):

    config.json  metrics.json  confusion_matrix.png  history.png
    model/model.weights.h5  model/serving/  checkpoints/  logs/

On Vertex AI a job with a base output directory gets `AIP_MODEL_DIR=<base>/model/`,
`AIP_CHECKPOINT_DIR=<base>/checkpoints/` and `AIP_TENSORBOARD_LOG_DIR=<base>/logs/`, and the
container's local disk disappears with it. So the model, checkpoint and log folders follow
those variables, and without an explicit `--job-dir` the other files go to `<base>/`, the
folder the three variables share: a Vertex user finds `metrics.json` beside `model/`.
Every write goes through `tf.io.gfile`, so `gs://`, `ram://` and any other TensorFlow file
system work; JSON files are written to a temporary name and renamed, so a preemption never
leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath

import tensorflow as tf

DEFAULT_JOB_DIR = "out/job"


def job_dir(flag_value: str | None) -> str:
    """`--job-dir` if given, else the base output directory Vertex implies, else out/job."""
    if flag_value:
        return flag_value
    model_dir = os.environ.get("AIP_MODEL_DIR")
    if model_dir:
        return posixpath.dirname(model_dir.rstrip("/"))
    return DEFAULT_JOB_DIR


def output_dirs(job: str) -> dict[str, str]:
    """Vertex AI's AIP_* folders when set, otherwise folders under the job dir."""
    return {
        "model": os.environ.get("AIP_MODEL_DIR") or os.path.join(job, "model"),
        "checkpoints": os.environ.get("AIP_CHECKPOINT_DIR") or os.path.join(job, "checkpoints"),
        "logs": os.environ.get("AIP_TENSORBOARD_LOG_DIR") or os.path.join(job, "logs"),
        "job": job,
    }


def write_json(path: str, value) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    temporary = path + ".tmp"
    with tf.io.gfile.GFile(temporary, "w") as handle:
        json.dump(value, handle, indent=2)
    tf.io.gfile.rename(temporary, path, overwrite=True)


def read_json(path: str):
    """The JSON file's contents, or None when there is no such file."""
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def remove_tree(path: str) -> None:
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def weights_digest(model) -> str:
    """SHA-256 over the model's weights in order: equal on every worker after a synchronous run."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.path.encode())
        digest.update(tf.convert_to_tensor(weight).numpy().tobytes())
    return digest.hexdigest()
