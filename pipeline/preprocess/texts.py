"""A text's row rules as TF ops, so that the serving signature refuses what the shards job refuses.

The shards job rejects a row whose text is empty or only whitespace (`empty_text`, by Python's
`str.strip`) or whose bytes are not UTF-8 or hold a NUL (`bad_encoding`, by the CSV reader).
`check_texts` says the same of a batch of texts inside a TF graph, with Python's own set of
whitespace characters, so a pair the job would have rejected is marked invalid by serving for
the same reason; it also returns the texts with invalid bytes replaced, so that the tokenizer
never sees them.
"""

from __future__ import annotations

import sys

import tensorflow as tf

TEXT_OK, EMPTY_TEXT, BAD_ENCODING = 0, 1, 2
STATUS_REASONS = ("", "empty_text", "bad_encoding")
STATUS_MESSAGES = ("", "the text is empty or only whitespace", "the text is not UTF-8, or holds a NUL byte")
# The characters `str.strip()` removes (those `str.isspace()` calls whitespace), as an RE2 class.
_WHITESPACE = "".join(f"\\x{{{code:x}}}" for code in range(sys.maxunicode + 1) if chr(code).isspace())
_ONLY_WHITESPACE = f"[{_WHITESPACE}]*"


def check_texts(texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(the texts with invalid bytes replaced by U+FFFD, string [B]; TEXT_OK, EMPTY_TEXT or
    BAD_ENCODING for each, int32 [B]) of a batch of texts [B]."""
    texts = tf.convert_to_tensor(texts, tf.string)
    transcoded = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    # Invalid bytes come back replaced, so the text changes; a NUL byte is valid UTF-8 but not text.
    bad = tf.not_equal(transcoded, texts) | tf.strings.regex_full_match(texts, "(?s).*\\x00.*")
    empty = tf.strings.regex_full_match(transcoded, _ONLY_WHITESPACE)
    return transcoded, tf.where(bad, BAD_ENCODING, tf.where(empty, EMPTY_TEXT, TEXT_OK))
