"""Image decoding and text packing: the TF functions the Beam job and serving share."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipeline import preprocess
from tests.conftest import jpeg_bytes, png_bomb_bytes

SIZE = 32


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def top_band_image(width=120, height=90) -> Image.Image:
    """Red band over the top third, black elsewhere: orientation and colour are easy to check."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 3, :, 0] = 255
    return Image.fromarray(pixels)


def decode_both_ways(data: bytes, size: int = SIZE) -> np.ndarray:
    """Decodes eagerly and inside Dataset.map; the two must agree exactly."""
    eager = preprocess.decode_image(tf.constant(data), size).numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors(data).map(lambda d: preprocess.decode_image(d, size)))).numpy()
    np.testing.assert_array_equal(eager, mapped)
    return eager


FORMATS = {
    "jpeg": lambda im: encode(im, "JPEG", quality=95),
    "progressive-jpeg": lambda im: encode(im, "JPEG", quality=95, progressive=True),
    "cmyk-jpeg": lambda im: encode(im.convert("CMYK"), "JPEG", quality=95),
    "gray-jpeg": lambda im: encode(im.convert("L"), "JPEG", quality=95),
    "png": lambda im: encode(im, "PNG"),
    "rgba-png": lambda im: encode(im.convert("RGBA"), "PNG"),
    "palette-png": lambda im: encode(im.convert("P"), "PNG"),
    "gray-png": lambda im: encode(im.convert("L"), "PNG"),
    "gif": lambda im: encode(im, "GIF"),
    "bmp": lambda im: encode(im, "BMP"),
    "webp": lambda im: encode(im, "WEBP", lossless=True),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_tweet_format_decodes_to_upright_rgb(name):
    image = decode_both_ways(FORMATS[name](top_band_image()))
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    top, bottom = image[2].astype(float).mean(axis=0), image[-3].astype(float).mean(axis=0)
    if name.startswith("gray"):
        assert top.mean() > 50 and bottom.max() < 10
    else:
        assert top[0] > 230 and top[1] < 25 and bottom.max() < 10, (top, bottom)


def test_format_is_sniffed_from_content_not_name():
    png = FORMATS["png"](top_band_image())
    assert preprocess.image_format(tf.constant(png)).numpy() == b"png"
    assert preprocess.image_format(tf.constant(jpeg_bytes())).numpy() == b"jpeg"


def test_sixteen_bit_png_becomes_eight_bit_rgb():
    pixels = np.zeros((40, 40), np.uint16)
    pixels[:20] = 65535
    image = decode_both_ways(encode(Image.fromarray(pixels), "PNG"))
    assert image[2, 2].tolist() == [255, 255, 255] and image[-3, 2].tolist() == [0, 0, 0]


def test_transparent_pixels_are_composited_over_white():
    rgba = np.zeros((40, 40, 4), np.uint8)  # Fully transparent black.
    image = decode_both_ways(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert image.min() == 255


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    # A red top band and a green left band: every one of the eight orientations looks different.
    pixels = np.asarray(top_band_image()).copy()
    pixels[:, :30, 1] = 255
    data = encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes())
    assert preprocess.exif_orientation(tf.constant(data)).numpy() == orientation
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB").resize((SIZE, SIZE)))
    ours = decode_both_ways(data)
    # Where the bands are must agree with Pillow's exif_transpose (colour within codec noise).
    for channel in (0, 1):
        assert np.mean(np.abs((ours[..., channel] > 128).astype(int) - (expected[..., channel] > 128).astype(int))) < 0.05


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def test_exif_is_found_behind_other_segments_and_not_in_comments():
    exif = Image.Exif()
    exif[0x0112] = 6
    with_exif = encode(top_band_image(), "JPEG", exif=exif.tobytes())
    plain = encode(top_band_image(), "JPEG")
    # An XMP APP1 and a comment that mentions "Exif\0\0" ahead of the real EXIF segment.
    xmp = _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>")
    comment = _segment(0xFE, b"copied from Exif\0\0 data")
    assert preprocess.exif_orientation(tf.constant(with_exif[:2] + xmp + with_exif[2:])).numpy() == 6
    # A comment is not an EXIF segment: no orientation is read from it.
    assert preprocess.exif_orientation(tf.constant(plain[:2] + comment + plain[2:])).numpy() == 1


def test_large_jpeg_uses_dct_scaling_and_matches_full_decode():
    big = Image.fromarray(np.kron(np.random.default_rng(0).integers(0, 255, (16, 12, 3)), np.ones((64, 64, 1))).astype(np.uint8))
    data = encode(big, "JPEG", quality=92)
    fast = preprocess.decode_image(tf.constant(data), SIZE).numpy().astype(float)
    full = tf.image.resize(tf.io.decode_jpeg(data), [SIZE, SIZE], method="area").numpy()  # Same filter, full decode.
    assert np.abs(fast - full).mean() < 3.0


def test_header_dimensions_are_read_without_decoding():
    assert preprocess.image_dimensions(tf.constant(jpeg_bytes(64, 48))).numpy().tolist() == [48, 64]
    assert preprocess.image_dimensions(tf.constant(png_bomb_bytes(3000, 2000))).numpy().tolist() == [2000, 3000]
    gif = encode(Image.new("RGB", (70, 50)), "GIF")
    assert preprocess.image_dimensions(tf.constant(gif)).numpy().tolist() == [50, 70]


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than"):
        preprocess.decode_image(tf.constant(png_bomb_bytes()), SIZE)


@pytest.mark.parametrize("data", [b"", b"not an image at all", jpeg_bytes()[:200]])
def test_garbage_and_truncated_bytes_raise(data):
    with pytest.raises(tf.errors.InvalidArgumentError):
        preprocess.decode_image(tf.constant(data), SIZE)


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "bridge", "is", "open", "closed", "##s", "!"]


def test_pair_packing_layout():
    tokenizer = preprocess.PairTokenizer(VOCAB, lowercase=True, seq_length=12)
    out = {k: v.numpy()[0].tolist() for k, v in tokenizer(tf.constant(["The bridge is OPEN!"]), tf.constant(["bridges closed"])).items()}
    ids = {token: index for index, token in enumerate(VOCAB)}
    expected = [ids[t] for t in ["[CLS]", "the", "bridge", "is", "open", "!", "[SEP]", "bridge", "##s", "closed", "[SEP]"]]
    assert out["input_word_ids"] == expected + [0]
    assert out["input_type_ids"] == [0] * 7 + [1] * 4 + [0]
    assert out["input_mask"] == [1] * 11 + [0]


def test_truncation_keeps_both_texts():
    tokenizer = preprocess.PairTokenizer(VOCAB, lowercase=True, seq_length=9)
    out = tokenizer(tf.constant(["the bridge is open " * 10]), tf.constant(["closed"]))
    word_ids = out["input_word_ids"].numpy()[0].tolist()
    assert len(word_ids) == 9 and word_ids.count(VOCAB.index("[SEP]")) == 2
    assert VOCAB.index("closed") in word_ids


def test_casing_changes_fingerprint_and_tokens():
    cased = preprocess.PairTokenizer(VOCAB, lowercase=False, seq_length=8)
    uncased = preprocess.PairTokenizer(VOCAB, lowercase=True, seq_length=8)
    assert cased.fingerprint != uncased.fingerprint
    text = tf.constant(["OPEN"])
    assert cased(text, text)["input_word_ids"].numpy()[0, 1] == VOCAB.index("[UNK]")
    assert uncased(text, text)["input_word_ids"].numpy()[0, 1] == VOCAB.index("open")


def test_missing_special_tokens_are_a_clear_error(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("hello\nworld\n")
    with pytest.raises(ValueError, match="special tokens"):
        preprocess.read_vocab(str(path))


def test_hub_preprocessing_model_packs_like_the_local_vocabulary(hub_preprocessor, dataset, tmp_path):
    """`--preprocess-handle` (the default source) and `--vocab` give the same BERT inputs."""
    from model import local_encoders
    from tests.conftest import SEQ_LENGTH

    rows = dataset["good_rows"] + dataset["bad_rows"]
    first = [row["text_1"] for row in rows] + ["the bridge is open " * 20]
    second = [row["text_2"] for row in rows] + ["Ünïcödé CAFÉ — closed 정말 هذا 😮"]
    hub = preprocess.HubPairTokenizer(hub_preprocessor, SEQ_LENGTH)
    local = preprocess.PairTokenizer(preprocess.read_vocab(str(dataset["vocab"])), True, SEQ_LENGTH)
    assert hub.lowercase and hub.fingerprint == local.fingerprint
    from_hub, from_vocab = hub(tf.constant(first), tf.constant(second)), local(tf.constant(first), tf.constant(second))
    for key in ("input_word_ids", "input_mask", "input_type_ids"):
        np.testing.assert_array_equal(from_hub[key].numpy(), from_vocab[key].numpy())
    assert from_hub["input_mask"].numpy()[-1].all()  # The long pair was truncated, not dropped.

    cased = local_encoders.build_bert_preprocessor(str(dataset["vocab"]), str(tmp_path / "cased"), False, (9,))
    cased_tokenizer = preprocess.HubPairTokenizer(cased, 9)
    assert not cased_tokenizer.lowercase and cased_tokenizer.fingerprint != local.fingerprint
