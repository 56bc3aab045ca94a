"""Two trainer processes on loopback under MultiWorkerMirroredStrategy (TF_CONFIG, 2 workers).

They must agree (same final weights), leave one set of results (the chief's), and, after one
of them is SIGKILLed mid-epoch and both are restarted, resume from the last backup.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from trainer import distribution
from tests.scripts.trainer_with_faults import KILL_AFTER_STEPS_ENV, SIGTERM_AFTER_STEPS_ENV, with_faults

GLOBAL_BATCH = 16
TIMEOUT = 150


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start_workers(shards, tiny_bert, job, epochs, kill_worker_1_after=None, flags=(), fault_env=KILL_AFTER_STEPS_ENV):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "TF_CONFIG", "TRAINER_TEST_"))}
    command = [
        sys.executable, "-m", "trainer.task", "--data-dir", str(shards), "--job-dir", str(job),
        "--epochs", str(epochs), "--batch-size", str(GLOBAL_BATCH), "--backup-every-steps", "1",
        "--text-encoder", tiny_bert, "--image-encoder", "tiny", "--image-weights", "none",
        "--projection-dims", "16", "--dropout-rate", "0", *flags,
    ]
    workers = []
    for index in range(2):
        env = {**base_env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        worker_command = command
        if index == 1 and kill_worker_1_after:
            env[fault_env] = str(kill_worker_1_after)
            worker_command = with_faults(command)
        workers.append(subprocess.Popen(worker_command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return workers


def finish(workers) -> list[tuple[int, str]]:
    results = []
    for worker in workers:
        try:
            output, _ = worker.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for other in workers:
                other.kill()
            raise
        results.append((worker.returncode, output))
    return results


def digest(output: str) -> str:
    found = re.findall(r"final weights sha256 ([0-9a-f]{64})", output)
    assert len(found) == 1, output[-3000:]
    return found[0]


def test_two_workers_agree_and_leave_one_set_of_results(shards, tiny_bert, tmp_path):
    """Without the embedding cache, so that the encoders run under the strategy in every step."""
    out, metadata = shards
    job = tmp_path / "job"
    off = ("--embedding-cache", "off")
    (code_0, output_0), (code_1, output_1) = finish(start_workers(out, tiny_bert, job, epochs=2, flags=off))
    assert code_0 == 0, output_0[-3000:]
    assert code_1 == 0, output_1[-3000:]
    assert "MultiWorkerMirroredStrategy" in output_0 or "CollectiveAllReduceStrategy" in output_0
    assert digest(output_0) == digest(output_1)  # Synchronous training: identical weights.
    # Both computed the same metrics through the strategy.
    summary = lambda output: re.findall(r"^(?:val|test): .*$", output, re.MULTILINE)  # noqa: E731
    assert len(summary(output_0)) == 2 and summary(output_0) == summary(output_1)

    # Exactly the chief's artifacts: one metrics.json, one export, one log set, no backup left.
    assert sorted(p.name for p in job.iterdir()) == ["config.json", "confusion_matrix.png", "history.png", "logs",
                                                     "metrics.json", "model"]
    assert sorted(p.name for p in (job / "model").iterdir()) == ["model.weights.h5", "serving"]
    for events in ("train", "validation"):
        assert len(list((job / "logs" / events).iterdir())) == 1
    config = json.loads((job / "config.json").read_text())
    assert len(config["history"]["loss"]) == 2 and len(config["history"]["val_macro_f1"]) == 2
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["test"]["examples"] == metadata["counts"]["test"]["total"]
    assert not os.path.exists(distribution.scratch_path(str(job), "worker-1"))  # The non-chief cleaned up.


def test_sigkill_of_one_worker_then_restart_resumes_from_the_backup(shards, tiny_bert, tmp_path):
    """With the embedding cache (both encoders are frozen): after the restart the chief's copy is
    whole and the non-chief's is gone, so both rebuild theirs (building is collective)."""
    out, metadata = shards
    job = tmp_path / "job"
    steps_per_epoch = metadata["counts"]["train"]["total"] // GLOBAL_BATCH
    assert steps_per_epoch >= 2
    killed_at = steps_per_epoch + 1  # Mid-epoch 2 of 3.
    chief, worker = start_workers(out, tiny_bert, job, epochs=3, kill_worker_1_after=killed_at)
    worker.communicate(timeout=TIMEOUT)
    assert worker.returncode == -signal.SIGKILL
    # The chief loses its peer: it fails or waits in a collective. Either way it is restarted.
    deadline = time.monotonic() + 20
    while chief.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if chief.poll() is None:
        chief.kill()
    chief.communicate(timeout=TIMEOUT)
    assert chief.returncode != 0
    assert not (job / "metrics.json").exists()

    (code_0, output_0), (code_1, output_1) = finish(start_workers(out, tiny_bert, job, epochs=3))
    assert code_0 == 0, output_0[-3000:]
    assert code_1 == 0, output_1[-3000:]
    assert digest(output_0) == digest(output_1)
    for output in (output_0, output_1):
        assert "Epoch 1/3" not in output and "Epoch 2/" in output and "Epoch 3/3" in output
        assert "embedding cache: running the frozen encoders" in output
    assert (job / "embedding_cache").is_dir()
    config = json.loads((job / "config.json").read_text())
    assert len(config["history"]["loss"]) == 3  # Epoch 1 from before the kill, 2 and 3 after.
    # Weights and optimizer state came from the chief's backup at step killed_at, and epoch 2
    # went on from there.
    assert config["optimizer_steps"] == 3 * steps_per_epoch
    assert not (job / "checkpoints").exists()


def test_a_preemption_notice_to_one_worker_saves_every_worker_at_one_step(shards, tiny_bert, tmp_path):
    """SIGTERM to the non-chief mid-epoch 2 of 2: both workers agree on the step (the all-reduce
    after each step), save there and exit 143; restarted, they train only the rest of epoch 2."""
    out, metadata = shards
    job = tmp_path / "job"
    steps_per_epoch = metadata["counts"]["train"]["total"] // GLOBAL_BATCH
    (code_0, output_0), (code_1, output_1) = finish(start_workers(
        out, tiny_bert, job, epochs=2, kill_worker_1_after=steps_per_epoch + 1, fault_env=SIGTERM_AFTER_STEPS_ENV,
        flags=("--embedding-cache", "off")))
    assert code_0 == code_1 == 143, (output_0[-2000:], output_1[-2000:])
    saved = [re.findall(r"preempted: saved the backup at epoch 2, step (\d+);", output) for output in (output_0, output_1)]
    assert saved[0] == saved[1] and len(saved[0]) == 1, saved  # One step, the same on both.
    (code_0, output_0), (code_1, output_1) = finish(start_workers(out, tiny_bert, job, epochs=2,
                                                                  flags=("--embedding-cache", "off")))
    assert code_0 == 0 and code_1 == 0, (output_0[-2000:], output_1[-2000:])
    assert f"resuming epoch 2 at step {int(saved[0][0]) + 1}" in output_0 and digest(output_0) == digest(output_1)
    config = json.loads((job / "config.json").read_text())
    assert config["optimizer_steps"] == 2 * steps_per_epoch
