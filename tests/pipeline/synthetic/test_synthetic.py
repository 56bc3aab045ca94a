"""The synthetic generator: deterministic, real schema, labels that need both modalities."""

from __future__ import annotations

import csv
import filecmp
from collections import Counter

from PIL import Image

from pipeline import features
from pipeline.inputs import rows
from pipeline.synthetic import pairs as synthetic
from pipeline.synthetic import texts


def test_same_seed_gives_identical_files(tmp_path):
    for name in ("a", "b"):
        synthetic.generate(str(tmp_path / name), 12, seed=3, ratios=(1, 1, 2), min_side=32, max_side=64)
    comparison = filecmp.dircmp(tmp_path / "a", tmp_path / "b")
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only
    images = filecmp.dircmp(tmp_path / "a" / "images", tmp_path / "b" / "images")
    assert not images.diff_files and len(images.common_files) == 24


def test_formats_can_be_restricted(tmp_path):
    synthetic.generate(str(tmp_path), 10, seed=2, ratios=(1, 1, 2), min_side=32, max_side=48, kinds=("jpeg",))
    found = set()
    for path in (tmp_path / "images").iterdir():
        with Image.open(path) as image:
            found.add((image.format, bool(image.info.get("progressive"))))
    assert found == {("JPEG", False)}


def test_rows_are_valid_and_ratios_hold(tmp_path):
    counts = synthetic.generate(str(tmp_path), 200, seed=1, ratios=(109, 109, 1182), min_side=24, max_side=40)
    assert sum(counts.values()) == 200
    for name, share in zip(("Contradictory", "Implies", "NoEntailment"), (109, 109, 1182)):
        assert abs(counts[name] - 200 * share / 1400) < 1
    with open(tmp_path / "tweets.csv", newline="", encoding="utf-8") as handle:
        data = list(csv.DictReader(handle))
    assert list(data[0]) == list(features.CSV_COLUMNS)
    records = [rows.parse_row(i, row) for i, row in enumerate(data, 1)]
    assert all(isinstance(r, rows.Record) for r in records)
    assert all(len(r.ids[0]) == 19 and len(r.ids[1]) == 19 for r in records)
    assert Counter(row["label"] for row in data) == Counter(counts)
    texts = " ".join(row["text_1"] + row["text_2"] for row in data)
    assert "\n" in texts and "https://t.co/" in texts and '"' in texts
    assert any("\u0600" <= ch <= "\u06ff" for ch in texts) and any("\uac00" <= ch <= "\ud7a3" for ch in texts)
    modes = Counter()
    for record in records:
        for name in record.image_files:
            with Image.open(tmp_path / "images" / name) as image:
                modes[(image.format, image.mode, bool(image.getexif().get(0x0112)))] += 1
    assert {("JPEG", "RGB", False), ("JPEG", "RGB", True), ("PNG", "RGBA", False), ("PNG", "P", False)} <= set(modes)
    assert any(fmt == "PNG" and mode == "L" for fmt, mode, _ in modes) or any(mode == "L" for _, mode, _ in modes)
    # The real data set's image URLs: 85% end in .jpg, 15% in .png.
    urls = [row[key].split("?")[0] for row in data for key in ("image_1", "image_2")]
    assert 0.80 <= sum(url.endswith(".jpg") for url in urls) / len(urls) <= 0.90


def test_label_rule_needs_both_modalities():
    # Same texts (topics, stances), different scenes → the label changes: text alone cannot decide.
    assert synthetic.pair_label((0, 0), (1, 1), (0, 0)) == "Implies"
    assert synthetic.pair_label((0, 0), (1, 2), (0, 0)) == "NoEntailment"
    # Same images, different topics → the label changes: images alone cannot decide.
    assert synthetic.pair_label((0, 1), (1, 1), (0, 0)) == "NoEntailment"
    assert synthetic.pair_label((0, 0), (1, 1), (0, 1)) == "Contradictory"


def test_vocabulary_covers_the_texts_and_has_bert_specials():
    vocab = texts.vocabulary()
    assert vocab[:4] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    assert len(vocab) == len(set(vocab))
    for word in ("bridge", "marathon", "cancelled", "confirmed"):
        assert word in vocab
