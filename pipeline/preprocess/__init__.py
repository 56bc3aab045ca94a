"""TF ops that run in two places: the Beam shards job, and the exported model's serving signature.

Whatever is here is part of the served model: `model.export` calls these very functions inside
the serving signature, so a pair scored online is preprocessed exactly as a training example
was (no training/serving skew). They are TF ops, not Python, for that reason.

- `image_headers`: format, size and EXIF orientation read from an image's header bytes;
- `images`: header check, decode, orientation, RGB, resize, and the JPEG re-encoding for storage;
- `bert_inputs`: a text pair packed as BERT inputs with the text encoder's own vocabulary.
"""

# The two ways `bert_inputs.PairTokenizer` can tokenize (same tokens, different TF Text ops):
# here, so that command lines can check a flag without importing TensorFlow.
TOKENIZER_OPS = ("fast", "classic")
# What `model.import_hf` writes beside an imported encoder: its source, and the pooling the
# checkpoint was trained for (`recommended_text_pooling`), which `bert_inputs.encoder_pooling` reads.
ENCODER_REPORT_FILE = "hf_import.json"
