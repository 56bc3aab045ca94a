"""The scoring job: the signature's answers, every row scored or rejected, the same on more processes."""

from __future__ import annotations

import collections
import csv
import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from model import export, multimodal
from pipeline import features
from pipeline.inputs import rows
from pipeline.score import command as score
from tests.conftest import BAD_ROW_REASONS, FILE_FAULT_REASONS, IMAGE_SIZE, SEQ_LENGTH

IN_PROCESS = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def score_args(model, csv_path, images, out, *extra):
    return ["--model", str(model), "--csv", str(csv_path), "--images", str(images), "--out", str(out), *extra]


def predictions(out, suffix="jsonl") -> dict:
    found = {}
    for path in sorted(glob.glob(os.path.join(out, f"predictions-*-of-*.{suffix}"))):
        with open(path, encoding="utf-8") as handle:
            if suffix == "jsonl":
                lines = [json.loads(line) for line in handle]
            else:
                lines = list(csv.DictReader(handle))
        for line in lines:
            key = (line["id_1"], line["id_2"])
            assert key not in found, f"pair {key} scored twice"
            found[key] = line
    return found


def direct_scores(model, dataset, records) -> np.ndarray:
    serve = export.load(model)
    texts = [tf.constant([r.texts[i] for r in records]) for i in range(2)]
    images = [tf.constant([(dataset["images"] / r.image_files[i]).read_bytes() for r in records]) for i in range(2)]
    return serve(text_1=texts[0], text_2=texts[1], image_1=images[0], image_2=images[1])["probabilities"].numpy()


@pytest.fixture(scope="module")
def scored_mixed(model_dir, dataset, tmp_path_factory):
    """One in-process run over the mixed CSV (good rows, one bad row per reason, file faults)."""
    out = tmp_path_factory.mktemp("scores")
    argv = score_args(model_dir, dataset["mixed_csv"], dataset["images"], out, "--batch-size", "16", "--write-csv", *IN_PROCESS)
    assert score.main(argv) == 0
    with open(out / "summary.json", encoding="utf-8") as handle:
        return out, json.load(handle)


def test_every_row_is_scored_or_rejected_for_the_shards_jobs_reason(scored_mixed, dataset):
    out, summary = scored_mixed
    good = dataset["good_rows"]
    expected = collections.Counter(BAD_ROW_REASONS + FILE_FAULT_REASONS)
    assert summary["rows_read"] == len(good) + len(BAD_ROW_REASONS) + len(FILE_FAULT_REASONS)
    assert summary["rows_scored"] == len(good) and summary["rows_rejected"] == sum(expected.values())
    assert summary["rejected_by_reason"] == dict(expected)
    with open(out / "rejected.jsonl", encoding="utf-8") as handle:
        rejected = [json.loads(line) for line in handle]
    assert collections.Counter(r["reason"] for r in rejected) == expected
    assert set(predictions(out)) == {(row["id_1"], row["id_2"]) for row in good}


def test_scores_equal_the_serving_signature_and_labels_stay_aligned(scored_mixed, model_dir, dataset):
    out, summary = scored_mixed
    records = [rows.parse_row(n, row) for n, row in enumerate(dataset["good_rows"], 1)]
    direct = direct_scores(model_dir, dataset, records)
    found, as_csv = predictions(out), predictions(out, "csv")
    confusion = np.zeros((3, 3), int)
    for record, expected in zip(records, direct):
        line = found[record.ids]
        got = np.array([line["probabilities"][name] for name in features.LABELS])
        assert np.abs(got - expected).max() <= 1e-5
        assert line["label"] == features.LABELS[int(expected.argmax())]
        assert line["true_label"] == features.LABELS[record.label]
        row = as_csv[record.ids]
        assert row["label"] == line["label"] and row["true_label"] == line["true_label"]
        assert [float(row[f"p_{name}"]) for name in features.LABELS] == got.tolist()
        confusion[record.label, int(expected.argmax())] += 1
    metrics = summary["metrics"]
    assert metrics["confusion_matrix"] == confusion.tolist() and summary["labelled_rows"] == len(records)
    assert metrics["accuracy"] == pytest.approx(np.trace(confusion) / len(records))
    assert sum(summary["predicted_counts"].values()) == len(records)


def test_an_export_of_the_separate_pairing_scores_as_its_signature(tiny_bert, dataset, tmp_path):
    """Batch scoring follows the export's pairing: each text is packed alone inside the signature."""
    import keras

    keras.utils.set_random_seed(4)
    config = multimodal.ModelConfig(text_encoder=tiny_bert, image_encoder="tiny", image_weights="none", projection_dims=8,
                                    image_size=IMAGE_SIZE, seq_length=SEQ_LENGTH, text_pairing="separate")
    model = export.export(multimodal.create_model(config), str(tmp_path / "serving"), tiny_bert, config.shape)
    out = tmp_path / "scores"
    assert score.main(score_args(model, dataset["good_csv"], dataset["images"], out, *IN_PROCESS)) == 0
    records = [rows.parse_row(n, row) for n, row in enumerate(dataset["good_rows"], 1)]
    found = predictions(out)
    for record, expected in zip(records, direct_scores(model, dataset, records)):
        got = np.array([found[record.ids]["probabilities"][name] for name in features.LABELS])
        assert np.abs(got - expected).max() <= 1e-5


def test_unlabelled_rows_and_more_processes_give_the_same_predictions(scored_mixed, model_dir, dataset, tmp_path):
    """No label column: scored without true labels or metrics; two worker processes agree.

    One more row has a JPEG cut after its header: the model's codec refuses it, and the
    other rows of its batch are scored all the same.
    """
    images = tmp_path / "images"
    images.mkdir()
    for row in dataset["good_rows"]:  # Copies: a symlink out of the folder is refused.
        for name in rows.parse_row(1, row).image_files:
            shutil.copy(dataset["images"] / name, images / name)
    cut = dataset["good_rows"][0]
    whole = (dataset["images"] / rows.parse_row(1, cut).image_files[1]).read_bytes()
    corrupt = {**cut, "id_2": "9000000000000000042", "image_2": "http://pbs.twimg.com/media/cut.jpg"}
    (images / "9000000000000000042.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    unlabelled = tmp_path / "new.csv"
    with open(unlabelled, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows.PAIR_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(dataset["good_rows"][:5] + [corrupt] + dataset["good_rows"][5:])
    out = tmp_path / "scores"
    argv = score_args(model_dir, unlabelled, dataset["images"], out, "--batch-size", "8",
                      "--direct_num_workers=2", "--direct_running_mode=multi_processing")
    argv[argv.index("--images") + 1] = str(images)
    assert score.main(argv) == 0
    with open(out / "summary.json", encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["rows_scored"] == len(dataset["good_rows"]) == summary["rows_read"] - 1
    assert summary["rejected_by_reason"] == {"undecodable_image": 1}
    with open(out / "rejected.jsonl", encoding="utf-8") as handle:
        (rejected,) = [json.loads(line) for line in handle]
    assert rejected["id_2"] == "9000000000000000042"
    assert rejected["message"] == "image_2: the image data is corrupt or truncated (the codec refused it)"
    assert "metrics" not in summary and summary["labelled_rows"] == 0
    before, after = predictions(scored_mixed[0]), predictions(out)
    assert set(after) == set(before)
    for key, line in after.items():
        assert "true_label" not in line and line["label"] == before[key]["label"]
        for name in features.LABELS:
            assert abs(line["probabilities"][name] - before[key]["probabilities"][name]) <= 1e-5


class _FailsOnBoom(tf.Module):
    """A signature that raises for a batch holding the text "boom", as a broken model would."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=k) for k in features.RAW_KEYS])
    def serve(self, text_1, text_2, image_1, image_2):
        check = tf.debugging.assert_equal(tf.reduce_any(tf.equal(text_1, "boom")), False, message="boom")
        with tf.control_dependencies([check]):
            probabilities = tf.one_hot(tf.strings.length(text_2) % 3, 3)
        return {"probabilities": probabilities, "label": tf.gather(tf.constant(features.LABELS), tf.argmax(probabilities, -1))}


def test_a_batch_the_model_fails_on_goes_to_the_dead_letter(dataset, tmp_path):
    module = _FailsOnBoom()
    model = tmp_path / "boom_model"
    tf.saved_model.save(module, str(model), signatures={"serving_default": module.serve})
    good = dataset["good_rows"][:6]
    boom = {**good[2], "text_1": "boom"}
    path = tmp_path / "boom.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(features.CSV_COLUMNS))
        writer.writeheader()
        writer.writerows(good[:2] + [boom] + good[3:])
    out = tmp_path / "scores"
    assert score.main(score_args(model, path, dataset["images"], out, "--batch-size", "1", *IN_PROCESS)) == 0
    with open(out / "rejected.jsonl", encoding="utf-8") as handle:
        rejected = [json.loads(line) for line in handle]
    assert [(r["id_1"], r["reason"]) for r in rejected] == [(boom["id_1"], "inference_failed")]
    assert "boom" in rejected[0]["message"]
    assert len(predictions(out)) == 5


def test_bad_invocations_fail_with_one_error_line(model_dir, dataset, tmp_path, capsys):
    args = score_args(tmp_path, dataset["good_csv"], dataset["images"], tmp_path / "a", *IN_PROCESS)
    assert score.main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --model {tmp_path} holds no saved_model.pb (give trainer.task's JOB_DIR/model/serving)"]
    out = tmp_path / "done"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    assert score.main(score_args(model_dir, dataset["good_csv"], dataset["images"], out, *IN_PROCESS)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --overwrite" in err[0]
    assert score.main(score_args(model_dir, dataset["good_csv"], dataset["images"], out, "--batch-size", "0")) == 2


def test_an_empty_batch_and_a_csv_with_nothing_to_score_give_empty_answers(model_dir, dataset, tmp_path):
    """RunInference may hand the handler 0 pairs; a CSV whose rows are all rejected reaches the
    model with none. Neither is an error: no predictions, every row accounted for."""
    from pipeline.score.inference import PairModelHandler

    handler = PairModelHandler(str(model_dir))
    assert list(handler.run_inference([], handler.load_model())) == []

    path = tmp_path / "all_bad.csv"
    bad = [row for row in dataset["bad_rows"] if row["id_1"] != dataset["good_rows"][1]["id_1"]]  # No duplicate.
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(features.CSV_COLUMNS))
        writer.writeheader()
        writer.writerows(bad)
    out = tmp_path / "scores"
    assert score.main(score_args(model_dir, path, dataset["images"], out, *IN_PROCESS)) == 0
    with open(out / "summary.json", encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["rows_scored"] == 0 and predictions(out) == {}
    assert summary["rows_read"] == summary["rows_rejected"] == len(bad) > 0
