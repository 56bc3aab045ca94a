"""From a CSV of tweet pairs and an images folder to validated TFRecord shards.

The data's path: `rows` (CSV row → Record or rejection) → `preprocess` (image decode/resize
and BERT pair packing, TF ops shared with serving) → `features` (the one example schema) →
`transforms` (Beam composites: dedupe, splits, write) → `run` (the command line).
"""

__version__ = "0.1.0"


