"""Tweet pairs drawn as a grid: image_1 | image_2, both texts below, then a caption.

Shared by `pipeline.preview` (pairs of the shards, with their label) and `trainer.error_analysis`
(misclassified test pairs, with true and predicted labels). Each pair's two images are its
own, in order: the notebook's `visualize()` drew image_1 twice.

Texts are drawn with DejaVu Sans when the system has it (Latin, Greek, Cyrillic, Arabic,
Hebrew), else Pillow's built-in font (Latin). Characters the font cannot show (emoji, Hangul,
CJK, and all non-Latin scripts with the built-in font) become a replacement mark, so any
text draws, and none raises. Newlines are kept as line breaks; long texts are wrapped and cut.
"""

from __future__ import annotations

import dataclasses
import io
import os
import textwrap
import unicodedata

from PIL import Image, ImageDraw, ImageFont

TILE = 128
GAP = 8
LINE_HEIGHT = 14
TEXT_LINES = 4  # Per text.
WRAP_CHARS = 42
# Blocks DejaVu Sans draws: Latin (with extensions), IPA, Greek, Cyrillic, Hebrew, Arabic, punctuation, arrows.
_DEJAVU_BLOCKS = ((0x0000, 0x058F), (0x0590, 0x06FF), (0x1E00, 0x1FFF), (0x2000, 0x22FF), (0xFB50, 0xFEFF))
_LATIN_BLOCKS = ((0x0000, 0x024F), (0x2010, 0x2027))


@dataclasses.dataclass(frozen=True)
class PairCell:
    """One pair to draw: the images' encoded bytes, the two texts, and caption lines."""

    image_1: bytes
    image_2: bytes
    text_1: str
    text_2: str
    caption: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Font:
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont
    blocks: tuple[tuple[int, int], ...]
    replacement: str


def load_font() -> _Font:
    try:
        return _Font(ImageFont.truetype("DejaVuSans.ttf", 11), _DEJAVU_BLOCKS, "\u25a1")
    except OSError:
        pass
    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1, or without FreeType: the Latin-1 bitmap font.
        font = ImageFont.load_default()
    return _Font(font, _LATIN_BLOCKS, "?")


def displayable(text: str, font: _Font) -> str:
    """`text` with what the font cannot draw replaced (runs of it by one mark), controls dropped."""
    out: list[str] = []
    for char in text:
        if char == "\n":
            out.append(char)
            continue
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):  # Controls, ZWJ, lone surrogates.
            continue
        code = ord(char)
        if any(low <= code <= high for low, high in font.blocks):
            out.append(char)
        elif not out or out[-1] != font.replacement:
            out.append(font.replacement)
    return "".join(out)


def wrapped(text: str, font: _Font, lines: int = TEXT_LINES, width: int = WRAP_CHARS) -> list[str]:
    """At most `lines` lines of `width` characters; a cut text ends with an ellipsis."""
    result: list[str] = []
    for paragraph in displayable(text, font).split("\n"):
        result += textwrap.wrap(paragraph, width) or ([""] if paragraph == "" and result else [])
    if len(result) > lines:
        result = result[:lines]
        result[-1] = result[-1][: width - 1].rstrip() + "…"
    return result


def _tile(data: bytes) -> Image.Image:
    """The stored image at TILE px; a grey tile (not an error) if it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB").resize((TILE, TILE), Image.Resampling.BILINEAR)
    except (OSError, ValueError):
        return Image.new("RGB", (TILE, TILE), (128, 128, 128))


def draw_grid(cells: list[PairCell], columns: int = 2, title: str = "") -> Image.Image:
    """The cells in rows of `columns`; a title line on top when given."""
    font = load_font()
    cell_width = 2 * TILE + GAP
    text_height = LINE_HEIGHT * (2 * TEXT_LINES + 3)
    caption_lines = max((len(cell.caption) for cell in cells), default=0)
    cell_height = TILE + GAP + text_height + LINE_HEIGHT * caption_lines
    columns = max(1, min(columns, len(cells) or 1))
    grid_rows = max(1, -(-len(cells) // columns))
    top = LINE_HEIGHT * 2 if title else 0
    canvas = Image.new("RGB", (GAP + columns * (cell_width + 2 * GAP), top + GAP + grid_rows * (cell_height + GAP)),
                       "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((GAP, GAP // 2), displayable(title, font), fill="black", font=font.font)
    if not cells:
        draw.text((GAP, top + GAP), "no pairs to show", fill="black", font=font.font)
    for index, cell in enumerate(cells):
        x = GAP + (index % columns) * (cell_width + 2 * GAP)
        y = top + GAP + (index // columns) * (cell_height + GAP)
        canvas.paste(_tile(cell.image_1), (x, y))
        canvas.paste(_tile(cell.image_2), (x + TILE + GAP, y))
        line_y = y + TILE + GAP // 2
        for number, text in ((1, cell.text_1), (2, cell.text_2)):
            draw.text((x, line_y), f"text_{number}:", fill=(90, 90, 90), font=font.font)
            line_y += LINE_HEIGHT
            for line in wrapped(text, font):
                draw.text((x, line_y), line, fill="black", font=font.font)
                line_y += LINE_HEIGHT
        line_y = y + TILE + GAP + text_height - LINE_HEIGHT // 2
        for line in cell.caption:
            line = displayable(line, font)
            line = line if len(line) <= WRAP_CHARS else line[: WRAP_CHARS - 1] + "…"  # Never into the next cell.
            draw.text((x, line_y), line, fill=(20, 20, 140), font=font.font)
            line_y += LINE_HEIGHT
    return canvas


def write_png(image, path: str) -> None:
    """Saves a PIL image through tf.io.gfile, so `--out gs://...` works too."""
    import tensorflow as tf

    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    parent = os.path.dirname(path)
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())
