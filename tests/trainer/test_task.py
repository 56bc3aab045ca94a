"""`python -m trainer.task` end to end on Beam shards with the tiny local encoders."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from model import losses
from pipeline import features, metrics
from pipeline.inputs import rows
from trainer import artifacts, distribution, task
from trainer.config import define_flags
from tests.scripts.trainer_with_faults import KILL_AFTER_STEPS_ENV, KILL_AT_ENV, SIGTERM_AFTER_STEPS_ENV, with_faults
from tests.conftest import IMAGE_SIZE, SEQ_LENGTH



def trainer_command(out, tiny_bert, job, *flags: str) -> list[str]:
    """`python -m trainer.task` on the fixture shards with the tiny encoders, plus `flags`."""
    import sys

    return [sys.executable, "-m", "trainer.task", "--data-dir", str(out), "--job-dir", str(job), "--batch-size", "8",
            "--text-encoder", tiny_bert, "--image-encoder", "tiny", "--image-weights", "none",
            "--projection-dims", "16", *flags]


def local_env() -> dict[str, str]:
    """This process's environment without Vertex's or a cluster's variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "TF_CONFIG"))}

def test_training_writes_every_artifact_through_gfile(shards, dataset, tiny_bert, monkeypatch, capsys):
    """The job dir is on TF's in-memory file system (`ram://`), as it would be on `gs://`."""
    import tensorflow as tf

    out, metadata = shards
    for name in ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    job = "ram://trainer-test/job"
    results = task.main([  # --image-size and --seq-length come from metadata.json.
        "--data-dir", str(out), "--job-dir", job, "--epochs", "2", "--batch-size", "8",
        "--text-encoder", tiny_bert, "--image-encoder", "tiny", "--image-weights", "none",
        "--projection-dims", "16", "--loss", "weighted-ce",
    ])
    read = lambda name: tf.io.gfile.GFile(f"{job}/{name}", "rb").read()  # noqa: E731
    written = json.loads(read("metrics.json"))
    assert written == json.loads(json.dumps(results))
    for split in ("val", "test"):
        report = written[split]
        assert set(report) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "majority_baseline"}
        assert set(report["per_class"]) == set(features.LABELS)
        assert np.sum(report["confusion_matrix"]) == metadata["counts"][split]["total"]
    config = json.loads(read("config.json"))
    assert config["train"]["loss"] == "weighted-ce" and config["data_metadata"] == features.read_metadata(str(out))
    assert (config["model"]["image_size"], config["model"]["seq_length"]) == (IMAGE_SIZE, SEQ_LENGTH)
    assert len(config["history"]["loss"]) == 2 and len(config["history"]["val_macro_f1"]) == 2
    for picture in ("confusion_matrix.png", "history.png"):
        assert read(picture)[:8] == b"\x89PNG\r\n\x1a\n"
    assert read("model/model.weights.h5") and tf.io.gfile.glob(f"{job}/logs/train/events.out.tfevents.*")
    assert not tf.io.gfile.exists(f"{job}/checkpoints")  # Deleted once every artifact was written.

    # The exported model scores a pair from raw text and image files on the command line.
    from model import predict

    serving = f"{job}/model/serving"
    row = dataset["good_rows"][0]
    record = rows.parse_row(1, row)
    argv = ["--model", serving, "--text-1", record.texts[0], "--text-2", record.texts[1],
            "--image-1", str(dataset["images"] / record.image_files[0]), "--image-2", str(dataset["images"] / record.image_files[1])]
    assert predict.main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["label"] in features.LABELS and abs(sum(printed["probabilities"].values()) - 1) < 1e-3
    assert predict.main(["--model", serving, "--csv", str(dataset["good_csv"]),
                         "--images", str(dataset["images"]), "--rows", "3"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-3:]]
    assert [p["true_label"] for p in printed] == [row["label"] for row in dataset["good_rows"][:3]]

    # The errors grid: the export rescores the test shards and finds the trainer's misses, no more.
    from trainer import error_analysis as errors

    assert errors.main([job, "--pairs", "3"]) == 0
    assert "the export scores as training did" in capsys.readouterr().out
    listed = [json.loads(line) for line in read("errors.jsonl").decode().splitlines()]
    matrix = np.array(written["test"]["confusion_matrix"])
    assert len(listed) == matrix.sum() - np.trace(matrix)
    confidences = [record["confidence"] for record in listed]
    assert confidences == sorted(confidences, reverse=True)
    truth = {tuple(ids): features.LABELS[label] for ids, label in _test_labels(out)}
    for record in listed:  # Each miss keeps its own pair's label.
        assert record["true_label"] == truth[tuple(record["ids"])] != record["predicted"]
    assert read("errors.png")[:8] == b"\x89PNG\r\n\x1a\n"


def _test_labels(shards_dir):
    """(ids, label) of every test pair, read straight from the shards."""
    import tensorflow as tf

    for serialized in tf.data.TFRecordDataset(features.shard_files(str(shards_dir), "test"), compression_type="GZIP"):
        example = tf.train.Example.FromString(serialized.numpy()).features.feature
        yield (tuple(example[key].bytes_list.value[0].decode() for key in features.ID_KEYS),
               example["label"].int64_list.value[0])


def test_shard_settings_are_defaults_and_a_mismatch_is_one_error_line(shards, tiny_bert, tmp_path):
    import subprocess
    import sys

    out, _ = shards
    result = subprocess.run([
        sys.executable, "-m", "trainer.task", "--data-dir", str(out), "--job-dir", str(tmp_path / "job"),
        "--text-encoder", tiny_bert, "--image-encoder", "tiny", "--image-weights", "none",
        "--image-size", str(IMAGE_SIZE + 1),
    ], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: shards do not match")
    offline = subprocess.run([
        sys.executable, "-m", "trainer.task", "--data-dir", str(out), "--job-dir", str(tmp_path / "job"),
        "--text-encoder", "https://tfhub.dev/tensorflow/small_bert/bert_en_uncased_L-2_H-256_A-4/1",
    ], capture_output=True, text=True, env={**os.environ, "TFHUB_CACHE_DIR": str(tmp_path / "hub"),
                                            "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"})
    lines = offline.stderr.strip().splitlines()
    assert offline.returncode == 2 and "Traceback" not in offline.stderr, offline.stderr[-2000:]
    assert lines[-1].startswith("error: cannot load the text encoder") and "local or gs:// copy" in lines[-1]


def test_vertex_environment_overrides_job_dir(monkeypatch):
    monkeypatch.setenv("AIP_MODEL_DIR", "gs://b/model/")
    monkeypatch.setenv("AIP_CHECKPOINT_DIR", "gs://b/checkpoints/")
    monkeypatch.delenv("AIP_TENSORBOARD_LOG_DIR", raising=False)
    dirs = artifacts.output_dirs("local/job")
    assert dirs["model"] == "gs://b/model/" and dirs["checkpoints"] == "gs://b/checkpoints/"
    assert dirs["logs"] == "local/job/logs"
    # Without --job-dir, metrics.json and the plots go to the base output directory.
    assert artifacts.job_dir(None) == "gs://b" and artifacts.job_dir("local/job") == "local/job"
    monkeypatch.delenv("AIP_MODEL_DIR")
    assert artifacts.job_dir(None) == "out/job"


@pytest.mark.parametrize(
    "tf_config, chief",
    [
        (None, True),
        ({"cluster": {"chief": ["a"], "worker": ["b"]}, "task": {"type": "chief", "index": 0}}, True),
        ({"cluster": {"chief": ["a"], "worker": ["b"]}, "task": {"type": "worker", "index": 0}}, False),
        ({"cluster": {"worker": ["a", "b"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a", "b"]}, "task": {"type": "worker", "index": 1}}, False),
    ],
)
def test_only_the_chief_writes(tf_config, chief, monkeypatch):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert distribution.is_chief() == chief


def test_every_config_field_is_a_documented_flag():
    help_text = define_flags().format_help()
    for flag in ("--data-dir", "--job-dir", "--epochs", "--batch-size", "--learning-rate", "--loss",
                 "--text-encoder", "--image-weights", "--train-text-encoder", "--no-train-text-encoder"):
        assert flag in help_text
    assert "Global batch size" in help_text


def test_report_includes_majority_baseline():
    labels = np.array([2, 2, 2, 2, 0, 1])
    report = metrics.classification_report(labels, np.array([2, 2, 2, 2, 0, 2]))
    assert report["majority_baseline"]["accuracy"] == pytest.approx(4 / 6)
    assert report["majority_baseline"]["macro_f1"] == pytest.approx((0 + 0 + 0.8) / 3)
    assert report["per_class"]["Implies"]["recall"] == 0.0 and report["confusion_matrix"][1] == [0, 0, 1]


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_discounts_easy_examples():
    import keras

    labels = np.array([0, 2])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    cross_entropy = keras.losses.sparse_categorical_crossentropy(labels, probabilities).numpy()
    np.testing.assert_allclose(losses.focal_loss(0.0)(labels, probabilities).numpy(), cross_entropy, rtol=1e-5)
    focal = losses.focal_loss(2.0)(labels, probabilities).numpy()
    np.testing.assert_allclose(focal, cross_entropy * (1 - np.array([0.7, 0.8])) ** 2, rtol=1e-5)


def test_weighted_cross_entropy_trains_as_keras_class_weight_does():
    """The weights sit in the loss (Keras' class_weight cannot run under MultiWorkerMirroredStrategy):
    one step on the same batch moves the weights exactly as fit(class_weight=...) does."""
    import keras

    weights = {"Contradictory": 5.0, "Implies": 3.0, "NoEntailment": 0.4}
    features_, labels = np.random.default_rng(0).normal(size=(8, 4)).astype("float32"), np.array([0, 1, 2, 2, 2, 2, 1, 0])
    trained = []
    for loss, class_weight in ((losses.for_training("weighted-ce", class_weights=weights, labels=list(weights)), None),
                               ("sparse_categorical_crossentropy", {0: 5.0, 1: 3.0, 2: 0.4})):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
        model.fit(features_, labels, batch_size=8, epochs=1, shuffle=False, verbose=0, class_weight=class_weight)
        trained.append(model.get_weights()[0])
    np.testing.assert_allclose(trained[0], trained[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(trained[0], 0)


def test_resume_after_sigkill_continues_where_it_stopped(shards, tiny_bert, tmp_path):
    """Kill while the embedding cache is written, then mid-epoch 2 of 3; rerun the same command
    each time: the partial cache is rebuilt, the complete one reused, epoch 1 is not redone."""
    import subprocess

    out, metadata = shards
    job = tmp_path / "job"
    steps_per_epoch = metadata["counts"]["train"]["total"] // 8
    command = with_faults(trainer_command(out, tiny_bert, job, "--epochs", "3", "--backup-every-steps", "1",
                                          "--image-size", str(IMAGE_SIZE), "--seq-length", str(SEQ_LENGTH)))
    env = local_env()
    in_cache = subprocess.run(command, env={**env, KILL_AT_ENV: "cache-train"}, capture_output=True, text=True)
    assert in_cache.returncode == -9 and "embedding cache: train" in in_cache.stdout, in_cache.stderr[-2000:]
    assert list((job / "embedding_cache").iterdir()) and "Epoch" not in in_cache.stdout
    killed_at = steps_per_epoch + 2
    first = subprocess.run(command, env={**env, KILL_AFTER_STEPS_ENV: str(killed_at)}, capture_output=True, text=True)
    assert first.returncode == -9, first.stderr[-2000:]
    assert "running the frozen encoders" in first.stdout and "reusing" not in first.stdout  # Not the partial one.
    assert not (job / "metrics.json").exists() and any((job / "checkpoints").iterdir())

    second = subprocess.run(command, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "embedding cache: reusing" in second.stdout
    assert "Epoch 1/3" not in second.stdout and "Epoch 2/" in second.stdout and "Epoch 3/3" in second.stdout
    config = json.loads((job / "config.json").read_text())
    assert len(config["history"]["loss"]) == 3  # Epoch 1 from before the kill, then 2 and 3.
    # Weights and optimizer state came from the backup at the kill (step killed_at), and epoch 2
    # went on from there: no step was done twice.
    assert f"resuming epoch 2 at step 3 of {steps_per_epoch}" in second.stdout
    assert config["optimizer_steps"] == 3 * steps_per_epoch
    assert not (job / "checkpoints").exists()
    # The epoch kept (--select-by val_loss) is the best of all three, epoch 1's from before the kill included.
    val_loss = config["history"]["val_loss"]
    assert config["selected_epoch"] == val_loss.index(min(val_loss)) + 1


def test_a_preemption_notice_saves_the_step_and_the_rerun_redoes_none(shards, tiny_bert, tmp_path):
    """SIGTERM mid-epoch 2 of 2 (no --backup-every-steps): the trainer saves its backup at that
    step and exits with 143; the rerun trains only the rest of epoch 2."""
    import re
    import subprocess

    out, metadata = shards
    job = tmp_path / "job"
    steps_per_epoch = metadata["counts"]["train"]["total"] // 8
    command = with_faults(trainer_command(out, tiny_bert, job, "--epochs", "2"))
    env = local_env()
    first = subprocess.run(command, env={**env, SIGTERM_AFTER_STEPS_ENV: str(steps_per_epoch + 2)},
                           capture_output=True, text=True)
    assert first.returncode == 143, first.stderr[-2000:]
    saved = re.search(r"preempted: saved the backup at epoch 2, step (\d+);", first.stdout)
    assert saved and 2 <= int(saved.group(1)) <= 3, first.stdout[-2000:]  # The step of the notice, or the next.
    second = subprocess.run(command, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resuming epoch 2 at step {int(saved.group(1)) + 1} of {steps_per_epoch}" in second.stdout
    config = json.loads((job / "config.json").read_text())
    # Every step once: the rerun trained steps_per_epoch - saved steps, fewer than one epoch.
    assert config["optimizer_steps"] == 2 * steps_per_epoch and len(config["history"]["loss"]) == 2


def test_a_preemption_notice_at_an_epochs_last_step_keeps_that_epoch(shards, tiny_bert, tmp_path):
    """SIGTERM at the last step of epoch 1 of 2: the trainer exits once epoch 1 has ended and
    been saved, and the rerun starts at epoch 2, redoing no step of epoch 1."""
    import subprocess

    out, metadata = shards
    job = tmp_path / "job"
    steps_per_epoch = metadata["counts"]["train"]["total"] // 8
    command = with_faults(trainer_command(out, tiny_bert, job, "--epochs", "2"))
    env = local_env()
    first = subprocess.run(command, env={**env, SIGTERM_AFTER_STEPS_ENV: str(steps_per_epoch)},
                           capture_output=True, text=True)
    assert first.returncode == 143, first.stderr[-2000:]
    assert "preempted: the backup holds epoch 1, finished" in first.stdout, first.stdout[-2000:]
    second = subprocess.run(command, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Epoch 1/2" not in second.stdout and "Epoch 2/2" in second.stdout and "resuming" not in second.stdout
    config = json.loads((job / "config.json").read_text())
    assert config["optimizer_steps"] == 2 * steps_per_epoch and len(config["history"]["loss"]) == 2


def test_preemption_after_training_redoes_no_epoch(shards, tiny_bert, tmp_path):
    """Killed before the export, the rerun restores the final backup and trains nothing
    (without the embedding cache: the encoders run in every step)."""
    import subprocess

    out, metadata = shards
    job = tmp_path / "job"
    command = with_faults(trainer_command(out, tiny_bert, job, "--epochs", "2", "--embedding-cache", "off"))
    env = local_env()
    first = subprocess.run(command, env={**env, KILL_AT_ENV: "export"}, capture_output=True, text=True)
    assert first.returncode == -9 and "Epoch 2/2" in first.stdout, first.stderr[-2000:]
    second = subprocess.run(command, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Epoch" not in second.stdout
    config = json.loads((job / "config.json").read_text())
    assert len(config["history"]["loss"]) == 2
    assert config["optimizer_steps"] == 2 * (metadata["counts"]["train"]["total"] // 8)


def test_mirrored_strategy_over_two_devices_matches_one_device(shards, tiny_bert):
    """Same global batch, same start: two replicas must reach the same weights as one."""
    import subprocess
    import sys

    out = shards[0]
    result = subprocess.run(
        [sys.executable, "tests/scripts/mirrored_equivalence.py", str(out), tiny_bert, str(IMAGE_SIZE), str(SEQ_LENGTH)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == [1, 2]
    assert report["max_update"] > 1e-4  # Training really moved the weights ...
    assert report["max_difference"] < 1e-4  # ... and both ways moved them alike.
    # Evaluation through the strategy scores every test example once, in order, on both replicas.
    _, metadata = shards
    assert report["scored"] == [metadata["counts"]["test"]["total"]] * 2 and report["same_labels"]
    assert report["max_score_difference"] < 1e-4
    # The embedding cache's pass runs on both replicas and stores every train example once, alike.
    assert report["cached"] == [metadata["counts"]["train"]["total"]] * 2 and report["same_cached_pairs"]
    assert report["max_cached_difference"] < 1e-5


def test_mixed_precision_cross_attention_and_modality_dropout_train_and_export(shards, tiny_bert, tmp_path):
    """The options users combine on GPUs run end to end (in a subprocess: the dtype policy is global)."""
    import subprocess

    out, _ = shards
    job = tmp_path / "job"
    result = subprocess.run(trainer_command(
        out, tiny_bert, job, "--epochs", "1", "--image-size", str(IMAGE_SIZE), "--seq-length", str(SEQ_LENGTH),
        "--mixed-precision", "--fusion", "cross-attention", "--modality-dropout", "0.1", "--loss", "focal",
    ), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((job / "config.json").read_text())
    assert config["train"]["mixed_precision"] and config["model"]["fusion"] == "cross-attention"
    assert (job / "model" / "serving" / "saved_model.pb").exists()


def test_help_and_a_bad_flag_answer_without_tensorflow():
    import subprocess
    import sys

    probe = ("import sys, runpy; sys.argv = ['task'] + sys.argv[1:]\ntry:\n runpy.run_module('trainer.task', run_name='__main__')\n"
             "except SystemExit as exit:\n print('status', exit.code)\nprint(sorted(m for m in ('tensorflow', 'keras', 'apache_beam') if m in sys.modules))")
    helped = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True)
    assert "--text-encoder" in helped.stdout and "status 0" in helped.stdout and helped.stdout.strip().endswith("[]"), helped
    refused = subprocess.run([sys.executable, "-c", probe, "--loss", "hinge"], capture_output=True, text=True)
    assert refused.stderr.strip() == "error: --loss must be one of ce, weighted-ce, focal, not 'hinge'", refused.stderr
    assert "status 2" in refused.stdout and refused.stdout.strip().endswith("[]"), refused.stdout


def test_the_best_validation_epoch_is_kept_evaluated_and_recorded(shards, tiny_bert, tmp_path, monkeypatch):
    """--select-by val_macro_f1 puts back the weights of the epoch with the best validation
    macro-F1: the final evaluation reproduces that epoch's figure, and config.json names it."""
    for name in ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    out, _ = shards
    job = tmp_path / "job"
    results = task.main(["--data-dir", str(out), "--job-dir", str(job), "--epochs", "6", "--batch-size", "8",
                         "--text-encoder", tiny_bert, "--image-encoder", "tiny", "--image-weights", "none",
                         "--projection-dims", "16", "--loss", "weighted-ce", "--learning-rate", "0.01",
                         "--select-by", "val_macro_f1"])
    config = json.loads((job / "config.json").read_text())
    history = config["history"]["val_macro_f1"]
    assert config["select_by"] == "val_macro_f1" and config["selected_epoch"] == history.index(max(history)) + 1
    assert abs(results["val"]["macro_f1"] - max(history)) < 1e-9
    last = task.main(["--data-dir", str(out), "--job-dir", str(tmp_path / "last"), "--epochs", "6", "--batch-size", "8",
                      "--text-encoder", tiny_bert, "--image-encoder", "tiny", "--image-weights", "none",
                      "--projection-dims", "16", "--loss", "weighted-ce", "--learning-rate", "0.01", "--select-by", "last"])
    last_config = json.loads((tmp_path / "last" / "config.json").read_text())
    assert last_config["selected_epoch"] == 6 and last_config["history"]["val_macro_f1"] == history  # Same run.
    assert abs(last["val"]["macro_f1"] - history[-1]) < 1e-9


def test_separate_pairing_trains_exports_and_refuses_a_joint_model(separate_shards, tiny_bert, tmp_path, monkeypatch, capsys):
    for name in ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    out, metadata = separate_shards
    job = tmp_path / "job"
    flags = ["--data-dir", str(out), "--epochs", "1", "--batch-size", "8", "--text-encoder", tiny_bert,
             "--image-encoder", "tiny", "--image-weights", "none", "--projection-dims", "8"]
    task.main([*flags, "--job-dir", str(job)])
    assert "text: separate pairing, cls pooling" in capsys.readouterr().out  # Both from the shards.
    config = json.loads((job / "config.json").read_text())
    assert config["model"]["text_pairing"] == "separate" and (job / "model" / "serving" / "saved_model.pb").exists()
    with pytest.raises(ValueError, match="text pairing separate in the shards, joint in the model"):
        task.main([*flags, "--job-dir", str(tmp_path / "joint"), "--text-pairing", "joint"])


def test_a_model_that_predicts_one_class_for_every_validation_pair_is_called_collapsed(capsys):
    class Constant:
        def predict(self, model):
            return np.array([0, 1, 2, 2, 2, 2]), np.tile([[0.1, 0.1, 0.8]], (6, 1))

    task.evaluate({"val": Constant(), "test": Constant()}, None)
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: the model predicts NoEntailment for every validation pair: it has collapsed onto one "
                        "class (train with --loss weighted-ce, the default, and more epochs)"]


def test_a_damaged_shard_stops_the_trainer_with_one_line_naming_it(shards, tiny_bert, tmp_path):
    """64 flipped bytes mid-shard (same size: found when read) and a cut shard (found before
    training starts): one `error:` line naming the file, no traceback."""
    import shutil
    import subprocess

    from tests.pipeline.test_verify import flip_64_bytes

    out, _ = shards
    name = "train-00001-of-00002.tfrecord.gz"
    for damage, when in ((flip_64_bytes, "unreadable"), (lambda path: path.write_bytes(path.read_bytes()[:-100]),
                                                         "metadata.json says")):
        copy = tmp_path / f"shards-{when.split()[0]}"
        shutil.copytree(out, copy)
        damage(copy / name)
        result = subprocess.run(trainer_command(copy, tiny_bert, tmp_path / f"job-{when.split()[0]}", "--epochs", "1"),
                                env=local_env(), capture_output=True, text=True)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert lines[-1].startswith(f"error: 1 damaged file in {copy}: {name} (") and when in lines[-1]
        assert "pipeline.verify" in lines[-1]


def test_a_damaged_embedding_cache_file_is_named_too(shards, tiny_bert, tmp_path):
    import subprocess

    from tests.pipeline.test_verify import flip_64_bytes

    out, _ = shards
    cache = tmp_path / "cache"
    command = trainer_command(out, tiny_bert, tmp_path / "job", "--epochs", "1", "--embedding-cache-dir", str(cache))
    assert subprocess.run(command, env=local_env(), capture_output=True, text=True).returncode == 0
    (damaged,) = [path for path in cache.glob("*/train-00001-of-*.tfrecord")]
    flip_64_bytes(damaged)
    result = subprocess.run(command, env=local_env(), capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (f"error: the embedding cache file {damaged.name} is damaged: "
                                                      f"delete {damaged.parent}, and the next run builds it again")
