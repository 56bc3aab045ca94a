"""`trainer.error_analysis`: which misclassified pairs the grid shows, in what order, with what."""

from __future__ import annotations

import numpy as np

from pipeline import features
from trainer import error_analysis as errors


def _batch(labels, tag):
    count = len(labels)
    return {
        "id_1": np.array([f"{tag}{i}a".encode() for i in range(count)]), "id_2": np.array([f"{tag}{i}b".encode() for i in range(count)]),
        "text_1": np.array([f"first {tag}{i}".encode() for i in range(count)]), "text_2": np.array([b"second"] * count),
        "image_1": np.array([f"img1-{tag}{i}".encode() for i in range(count)]), "image_2": np.array([f"img2-{tag}{i}".encode() for i in range(count)]),
        "label": np.array(labels),
    }


def test_most_confident_misses_first_each_with_its_own_pair():
    import tensorflow as tf

    # Per row: true label, and the probabilities the model gives (C, I, N).
    rows = {"x": [(2, (0.7, 0.2, 0.1)), (2, (0.1, 0.1, 0.8)), (0, (0.05, 0.05, 0.9))],
            "y": [(1, (0.3, 0.3, 0.4)), (1, (0.0, 1.0, 0.0)), (2, (0.02, 0.97, 0.01))]}
    batches = [_batch([label for label, _ in values], tag) for tag, values in rows.items()]
    outputs = iter([{"probabilities": tf.constant([p for _, p in values])} for values in rows.values()])
    seen = []

    def serve(**inputs):
        seen.append(sorted(inputs))
        return next(outputs)

    scored, shown, listed = errors.find_misses(serve, batches, keep=2)
    assert scored == 6 and seen[0] == sorted(features.TEXT_KEYS + features.IMAGE_KEYS)
    assert [record["ids"] for record in listed] == [["y2a", "y2b"], ["x2a", "x2b"], ["x0a", "x0b"], ["y0a", "y0b"]]
    assert [record["confidence"] for record in listed] == [0.97, 0.9, 0.7, 0.4]
    assert [(m.true_label, m.predicted) for m in shown] == [("NoEntailment", "Implies"), ("Contradictory", "NoEntailment")]
    assert [m.images for m in shown] == [(b"img1-y2", b"img2-y2"), (b"img1-x2", b"img2-x2")]
    assert shown[0].texts == ("first y2", "second") and shown[0].cell().caption[1] == "predicted: Implies (0.97)"


def test_skew_note_compares_with_the_trainers_count():
    metrics = {"test": {"confusion_matrix": [[5, 1, 0], [0, 4, 2], [1, 0, 20]]}}
    assert "scores as training did" in errors.skew_note(metrics, "test", 4)
    assert errors.skew_note(metrics, "test", 5).startswith("warning:")
    assert errors.skew_note(metrics, "val", 0).startswith("no trainer count") and errors.skew_note(None, "test", 4).startswith("no")


def test_a_folder_without_a_finished_job_is_one_error_line(tmp_path, capsys):
    assert errors.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}/config.json not found: give the --job-dir of a finished `python -m trainer.task` run"
    assert errors.main([str(tmp_path), "--pairs", "-1"]) == 2
