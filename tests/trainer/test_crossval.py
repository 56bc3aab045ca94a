"""`python -m trainer.crossval`: stratified, deterministic folds; one encoder pass; every pair tested once."""

from __future__ import annotations

import collections
import json

import pytest

from pipeline import cli, features
from trainer import crossval


def test_folds_are_stratified_deterministic_and_test_every_pair_once():
    pairs = [(f"{label}{index:04d}-9", label) for label, count in enumerate((23, 21, 240)) for index in range(count)]
    roles = crossval.fold_roles(pairs, folds=5, seed=3, val_fraction=0.05)
    assert roles == crossval.fold_roles(list(reversed(pairs)), folds=5, seed=3, val_fraction=0.05)  # Order-free.
    tested = collections.Counter(key for fold in roles for key, role in fold.items() if role == "test")
    assert set(tested) == {key for key, _ in pairs} and set(tested.values()) == {1}
    labels = dict(pairs)
    for fold in roles:
        assert set(fold) == set(labels)
        per_label = collections.Counter((labels[key], role) for key, role in fold.items())
        for label, count in enumerate((23, 21, 240)):
            assert per_label[(label, "test")] in (count // 5, count // 5 + 1)  # Stratified.
            assert per_label[(label, "val")] == round((count - per_label[(label, "test")]) * 0.05)
    vals = [{key for key, role in fold.items() if role == "val"} for fold in roles]
    assert len(set(map(frozenset, vals))) == 5  # Each fold validates on another slice.
    # The shards' own order: fold 0 tests the pairs that the split rule puts first in each label.
    for label, count in enumerate((23, 21, 240)):
        keys = [key for key, pair_label in pairs if pair_label == label]
        ordered = sorted(keys, key=lambda key: (features.stable_hash(key, 3), key))
        assert [key for key in ordered if roles[0][key] == "test"] == ordered[::5]


def test_crossval_runs_the_encoders_once_tests_every_pair_and_resumes(shards, tiny_bert, tmp_path, capsys):
    out, metadata = shards
    job = tmp_path / "cv"
    argv = ["--folds", "3", "--data-dir", str(out), "--job-dir", str(job), "--epochs", "2", "--batch-size", "8",
            "--text-encoder", tiny_bert, "--image-encoder", "tiny", "--image-weights", "none", "--projection-dims", "8",
            "--loss", "weighted-ce"]
    result = crossval.main(argv)
    printed = capsys.readouterr().out
    assert printed.count("embedding cache: running the frozen encoders") == 1  # One pass, then heads.
    written = json.loads((job / crossval.RESULT_FILE).read_text())
    assert written == json.loads(json.dumps(result))
    assert written["folds"] == 3 and len(written["macro_f1"]["per_fold"]) == 3
    assert set(written["macro_f1"]) == {"mean", "std", "per_fold"} and set(written["accuracy"]) == {"mean", "std", "per_fold"}
    assert set(written["per_class_recall"]) == {"Contradictory", "Implies", "NoEntailment"}
    total = metadata["examples_written"]
    assert written["pooled"]["examples"] == total and "intervals" in written["pooled"]  # Every pair tested once.
    assert abs(written["macro_f1"]["mean"] - sum(written["macro_f1"]["per_fold"]) / 3) < 1e-9
    assert "mean±std" in printed and "pooled (every pair tested once)" in printed
    assert not list(job.glob("fold-*/checkpoints"))

    again = crossval.main(argv)  # Every fold is done: nothing is trained again.
    printed = capsys.readouterr().out
    assert printed.count("done before") == 3 and "Epoch" not in printed and again == result
    # Other settings in the same job dir would mix two cross-validations: refused before any training.
    with pytest.raises(cli.UsageError, match="holds another cross-validation .*train differ"):
        crossval.main([*argv[:-1], "ce"])
