"""`python -m pipeline.preview`: each pair drawn with its own two images, in order; odd texts draw."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from pipeline import features
from pipeline.preview import command as preview
from pipeline.preview import pair_grid

SEQ_LENGTH = 8
SIZE = 16


def _solid_jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _colour(pair: int, side: int) -> tuple[int, int, int]:
    """image_1 is reddish, image_2 bluish; the pair's index sets the brightness."""
    level = 60 + 30 * pair
    return (level, 0, 0) if side == 1 else (0, 0, level)


def _write_shards(folder, pairs: int, **extra_metadata) -> None:
    import tensorflow as tf

    shape = features.Shape(SIZE, SEQ_LENGTH)
    options = tf.io.TFRecordOptions(compression_type=features.COMPRESSION)
    tokens = {"input_word_ids": [2, 7, 3, 8, 3, 0, 0, 0], "input_mask": [1] * 5 + [0] * 3, "input_type_ids": [0] * 8}
    counts = {split: {"total": 0, **{name: 0 for name in features.LABELS}} for split in features.SPLITS}
    with tf.io.TFRecordWriter(str(folder / f"train-00000-of-00001{features.SHARD_SUFFIX}"), options) as writer:
        for pair in range(pairs):
            label = pair % 3
            example = features.to_example((str(pair + 1), str(pair + 100)), (f"pair {pair} first", f"pair {pair} second"),
                                          (_solid_jpeg(_colour(pair, 1)), _solid_jpeg(_colour(pair, 2))), tokens, label, shape)
            writer.write(example.SerializeToString())
            counts["train"]["total"] += 1
            counts["train"][features.LABELS[label]] += 1
    metadata = {"image_size": SIZE, "seq_length": SEQ_LENGTH, "counts": counts, "rows_read": pairs + 1,
                "examples_written": pairs, "rows_rejected": 1, "rejected_by_reason": {"missing_image": 1},
                "image_storage": "jpeg q95", "max_pixels": 1000, **extra_metadata}
    (folder / features.METADATA_FILE).write_text(json.dumps(metadata))


def _tile_colour(image: Image.Image, x: int, y: int) -> np.ndarray:
    centre = pair_grid.TILE // 2
    return np.asarray(image)[y + centre, x + centre].astype(int)


def test_each_pair_is_drawn_with_its_own_two_images_in_order(tmp_path):
    _write_shards(tmp_path, 5)
    cells = preview.sample_pairs(str(tmp_path), "train", 8, seed=3)
    assert len(cells) == 5  # Fewer pairs than asked for: all of them.
    grid = pair_grid.draw_grid(cells, columns=2)
    for index, cell in enumerate(cells):
        pair = int(cell.text_1.split()[1])
        assert cell.text_2 == f"pair {pair} second" and cell.caption == (f"label: {features.LABELS[pair % 3]}",)
        x = pair_grid.GAP + (index % 2) * (2 * pair_grid.TILE + 3 * pair_grid.GAP)
        y = pair_grid.GAP + (index // 2) * (pair_grid.TILE + pair_grid.GAP + pair_grid.LINE_HEIGHT * (2 * pair_grid.TEXT_LINES + 4) + pair_grid.GAP)
        np.testing.assert_allclose(_tile_colour(grid, x, y), _colour(pair, 1), atol=6)
        np.testing.assert_allclose(_tile_colour(grid, x + pair_grid.TILE + pair_grid.GAP, y), _colour(pair, 2), atol=6)


def test_the_command_filters_by_label_and_writes_the_stats(tmp_path, capsys):
    shards = tmp_path / "shards"
    shards.mkdir()
    _write_shards(shards, 7)
    out = tmp_path / "pictures" / "preview.png"
    assert preview.main([str(shards), "--out", str(out), "--label", "Implies", "--pairs", "8"]) == 0
    assert "(2 pairs)" in capsys.readouterr().out  # Pairs 1 and 4 are Implies.
    assert Image.open(out).size[0] > 2 * pair_grid.TILE
    stats = (tmp_path / "pictures" / "preview.md").read_text()
    assert "| train | 7 | 3 | 2 | 2 | 5 | 5 | 5 | ≤ 0.0% |" in stats  # 5 of 8 tokens in every stored pair.
    assert "missing_image 1" in stats and "predate the token counts" in stats
    assert preview.main([str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: ")


def test_the_stats_say_the_exact_share_cut_and_the_original_images(tmp_path, capsys):
    """Shards with metadata.json's counts: the table reads them instead of the stored masks."""
    pair_tokens = {split: {"pairs": 0, "min": 0, "p50": 0, "p95": 0, "p99": 0, "max": 0, "truncated": 0,
                           "truncated_share": 0.0} for split in features.SPLITS}
    pair_tokens["train"] = {"pairs": 7, "min": 5, "p50": 9, "p95": 14, "p99": 14, "max": 14, "truncated": 3,
                            "truncated_share": 3 / 7}
    original = {"images": 14, "formats": {"jpeg": 10, "png": 4}, "short_side_below_image_size": 2,
                "long_side": {"min": 10, "p50": 640, "p95": 1900, "p99": 2000, "max": 2048},
                "short_side": {"min": 8, "p50": 480, "p95": 1200, "p99": 1500, "max": 1536}}
    _write_shards(tmp_path, 7, pair_tokens=pair_tokens, original_images=original)
    assert preview.main([str(tmp_path), "--out", str(tmp_path / "p.png")]) == 0
    stats = (tmp_path / "p.md").read_text()
    assert "share cut at 8" in stats and "| train | 7 | 3 | 2 | 2 | 9 | 14 | 14 | 42.9% |" in stats
    assert "| val | 0 | 0 | 0 | 0 | – | – | – | – |" in stats
    assert "jpeg 71%, png 29%" in stats and "long side p50 640 px (min 10, max 2048)" in stats
    assert "2 (14.3%) have a short side under 16 px" in stats and "predate" not in stats


@pytest.mark.parametrize("font", ["system", "builtin"])
def test_newlines_rtl_and_emoji_never_crash(font, monkeypatch):
    if font == "builtin":
        real = pair_grid.ImageFont.truetype

        def no_system_fonts(font, *args, **kwargs):  # Pillow's own font still loads (from bytes).
            if isinstance(font, str):
                raise OSError("no such font")
            return real(font, *args, **kwargs)

        monkeypatch.setattr(pair_grid.ImageFont, "truetype", no_system_fonts)
    texts = ("line one\nline two\n\nline four\nline five", "هذا مهم جدا", "שלום עולם", "정말 놀랍다 👩‍👩‍👧 🇫🇷 thread 👇",
             "x" * 500, "\u200f\u202e reversed \x00 nul")
    cells = [pair_grid.PairCell(b"not an image", b"", texts[i], texts[-1 - i], ("true: Implies", "p=0.99 😮"))
             for i in range(len(texts))]
    image = pair_grid.draw_grid(cells, columns=3, title="odd texts ✓")
    assert image.size[0] > 0
    loaded = pair_grid.load_font()
    for text in texts:
        lines = pair_grid.wrapped(text, loaded)
        assert len(lines) <= pair_grid.TEXT_LINES and all(len(line) <= pair_grid.WRAP_CHARS for line in lines)
    assert ("\u0647" in pair_grid.displayable(texts[1], loaded)) == (font == "system")
    assert "👇" not in pair_grid.displayable(texts[3], loaded) and "thread" in pair_grid.displayable(texts[3], loaded)
