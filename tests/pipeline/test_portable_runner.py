"""Both Beam jobs on Beam's PortableRunner, the portable pipeline proto and separate SDK worker
processes (what Dataflow's Runner v2 runs), against a worker pool on 127.0.0.1: the same
examples, rejected rows and counts as the local runner gives."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from pipeline import features
from pipeline.score import command as score
from pipeline.shards import command as shards_command
from tests.conftest import job_args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def portable_flags():
    """A Beam worker pool on 127.0.0.1 (it starts `python` from PATH: this venv's); stopped after."""
    port = free_port()
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", "--service_port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        pool.kill()
        raise RuntimeError("the Beam worker pool did not start")
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = env["PATH"]
    yield ["--runner", "PortableRunner", "--job_endpoint", "embed", "--environment_type", "EXTERNAL",
           "--environment_config", f"127.0.0.1:{port}"]
    os.environ["PATH"] = old_path
    pool.terminate()
    pool.wait(timeout=30)


def examples_by_split(out) -> dict:
    found = {}
    for split in features.SPLITS:
        spec = features.example_spec(features.Shape(), features.ID_KEYS + (features.LABEL_KEY,))
        records = tf.data.TFRecordDataset(features.shard_files(str(out), split), compression_type=features.COMPRESSION)
        found[split] = sorted((e["id_1"].numpy(), e["id_2"].numpy(), int(e["label"]))
                              for e in records.map(lambda r: tf.io.parse_single_example(r, spec)))
    return found


def test_the_shards_job_on_the_portable_runner_writes_what_the_local_runner_does(portable_flags, shards, dataset, tmp_path):
    local_out, local = shards
    out = tmp_path / "portable"
    portable = shards_command.run(job_args(dataset, out, extra=portable_flags))
    for key in ("counts", "rows_read", "examples_written", "rows_rejected", "rejected_by_reason", "pair_tokens",
                "output_files"):
        if key == "output_files":  # The same files and record counts; the bytes' order may differ.
            assert {n: f["records"] for n, f in portable[key].items()} == {n: f["records"] for n, f in local[key].items()}
        else:
            assert portable[key] == local[key], key
    assert examples_by_split(out) == examples_by_split(local_out)
    read = lambda folder: sorted(json.loads(line)["row_number"] for line in (folder / "rejected.jsonl").open())  # noqa: E731
    assert read(out) == read(local_out)


def test_the_scoring_job_on_the_portable_runner_scores_what_the_local_runner_does(portable_flags, model_dir, dataset,
                                                                                  tmp_path):
    def run(folder, flags):
        argv = ["--model", model_dir, "--csv", str(dataset["mixed_csv"]), "--images", str(dataset["images"]),
                "--out", str(folder), *flags]
        summary = score.run(argv)
        predictions = {}
        for path in folder.glob("predictions-*.jsonl"):
            for line in path.open():
                row = json.loads(line)
                predictions[(row["id_1"], row["id_2"])] = row["probabilities"]
        return summary, predictions

    local_summary, local = run(tmp_path / "local", [])
    summary, portable = run(tmp_path / "portable", portable_flags)
    assert summary["rows_scored"] == local_summary["rows_scored"] and summary["rejected_by_reason"] == local_summary[
        "rejected_by_reason"]
    assert portable.keys() == local.keys()
    for key, probabilities in local.items():
        assert max(abs(portable[key][name] - probabilities[name]) for name in probabilities) <= 1e-5
