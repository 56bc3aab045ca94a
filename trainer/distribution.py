"""Who runs where: the strategy, the chief, each worker's own scratch folder, and a Keras fix.

One machine runs the default strategy, or MirroredStrategy over its GPUs. `TF_CONFIG` naming
several workers (as Vertex AI sets it for a job with more than one replica) selects
MultiWorkerMirroredStrategy. Under it every worker runs the same program and takes part in
every collective (training steps, evaluation, saving), but only the chief's files are kept:
the others write to a local scratch folder that they delete at the end. Keras 3 callbacks
have no notion of a chief (no `is_chief` in keras 3.15), so the trainer hands each worker its
own folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG") or "{}")


def cluster_size() -> int:
    """Workers in `TF_CONFIG`'s cluster, the chief included (1 without TF_CONFIG)."""
    cluster = tf_config().get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def is_chief() -> bool:
    """The chief writes the kept artifacts: the `chief` task, or worker 0 when there is none."""
    config = tf_config()
    task, cluster = config.get("task", {}), config.get("cluster", {})
    if not task:
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index", 0) == 0


def task_name() -> str:
    task = tf_config().get("task", {})
    return f"{task.get('type', 'chief')}-{task.get('index', 0)}"


def choose_strategy(name: str):
    """`auto`: multi-worker when TF_CONFIG names several workers, mirrored with several GPUs."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {name!r}")
    if name == "auto":
        if cluster_size() > 1:
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def scratch_path(job_dir: str, task: str) -> str:
    job = hashlib.sha256(job_dir.encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"trainer-{job}-{task}")


@contextlib.contextmanager
def scratch_folder(job_dir: str):
    """A local folder for the files of a worker that is not the chief, deleted on the way out.

    The chief gets None: it writes to the real folders. A non-chief still saves backups,
    logs and the export (they may run collectives, so every worker must call them), but into
    this folder, so no two workers write or delete the same files. The name is fixed per job
    and task, so a worker restarted after a SIGKILL (which leaves no chance to clean up)
    first removes what its previous life left there.
    """
    if is_chief():
        yield None
        return
    folder = scratch_path(job_dir, task_name())
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def in_multi_worker_mode(strategy) -> bool:
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def any_worker(strategy, flag: bool) -> bool:
    """Whether `flag` is set on any worker: a collective every worker must call at the same
    point; on one machine, the flag itself."""
    if not in_multi_worker_mode(strategy):
        return bool(flag)
    import tensorflow as tf

    per_replica = strategy.run(lambda: tf.constant(int(flag), tf.int32))
    return int(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)) > 0


def prepare_for_fit(model, strategy, element_spec) -> None:
    """Works around two keras 3.15 bugs that stop `fit` under MultiWorkerMirroredStrategy.

    Both are keras-team/keras#20585 (see also #20329); remove this when it is fixed.

    1. `fit` first calls `Trainer._maybe_symbolic_build`, which under any strategy takes the
       first batch and calls `strategy.reduce("MEAN", batch)` on it. Our batches are dicts,
       and a multi-worker reduce refuses them ("Attempt to convert a value ({'image_1':
       PerReplica...}) with an unsupported type"). The reduced batch only serves to build
       unbuilt state from its shapes, so we build that state here from the dataset's
       `element_spec` (shapes and dtypes: no data, no collective) and make the step a no-op
       on this model instance. This runs under every strategy, so one path is tested.
    2. Across workers, Keras reduces each step's logs with `strategy.reduce("MEAN", v,
       axis=0)`, and a scalar loss has no axis 0 ("Invalid reduction dimension 0 for input
       with 0 dimensions"). Under a multi-worker strategy, the train step returns its logs as
       vectors of one element, which that reduce turns back into scalars.
    """
    import tensorflow as tf

    with strategy.scope():
        model._symbolic_build(data_batch=element_spec)
    unbuilt = [layer.name for layer in model._flatten_layers() if not layer.built]
    if unbuilt or not model.optimizer.built:
        raise RuntimeError(f"model state not built before fit: layers {unbuilt}, optimizer built {model.optimizer.built}")
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

    if in_multi_worker_mode(strategy):
        train_step = model.train_step

        def train_step_with_vector_logs(data):
            return {key: tf.reshape(value, [1]) for key, value in train_step(data).items()}

        model.train_step = train_step_with_vector_logs
