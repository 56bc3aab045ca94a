"""Deterministic synthetic tweet pairs in the real data set's schema: `python -m pipeline.synthetic`.

`pairs` writes the CSV, images and vocabulary and holds the labelling rule, which needs
both modalities of both tweets; `texts` makes the tweets' texts, `images` their images.
"""
