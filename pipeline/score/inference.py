"""RunInference's model handler for the exported model: batches of raw pairs → probabilities.

Beam's `TFModelHandlerTensor` loads models with `tf.keras.models.load_model`, which under
Keras 3 refuses a SavedModel folder (apache/beam#30616), and its default inference function
stacks one tensor, while the signature takes four. So this handler loads the SavedModel with
`tf.saved_model.load` and calls its `serving_default` signature once per batch, on the raw
texts and image bytes: the preprocessing inside the export is the Beam shards job's own
(`pipeline.preprocess`), so scoring cannot skew from training.

One model per worker process is the default: Dataflow's one SDK process per vCPU then holds
one copy per core, each running on its core's share.
`model_copies=N` (`--model-copies`) loads N copies per machine instead, shared by all its
processes (Beam's `large_model` mode), for exports too large to hold once per core, such as
BERT-base with ResNet50V2 on a machine with many vCPUs.
"""

from __future__ import annotations

import collections
from typing import Any, Iterable, NamedTuple, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipeline import features

# A pair as the serving signature takes it: two texts and two encoded images, named and
# ordered as `features.RAW_KEYS`.
Pair = collections.namedtuple("Pair", features.RAW_KEYS)


class Scores(NamedTuple):
    """The model's answer for one pair; `valid` false (with `error`, and the shards job's reason
    code in `reason`) when an input was unusable."""

    probabilities: tuple[float, ...]
    valid: bool
    error: str
    reason: str


class PairModelHandler(ModelHandler[Pair, PredictionResult, Any]):
    """`Pair` batches → `PredictionResult(None, Scores)` through the export's serving signature.

    The result's `example` is None: the image bytes are not carried past the model.
    """

    def __init__(self, model_dir: str, batch_size: int = 64, model_copies: Optional[int] = None):
        super().__init__(min_batch_size=1, max_batch_size=batch_size, model_copies=model_copies or None)
        self._model_dir = model_dir

    def load_model(self):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  Registers the tokenizer's ops before loading.

        return tf.saved_model.load(self._model_dir).signatures["serving_default"]

    def run_inference(self, batch: Sequence[Pair], model, inference_args: Optional[dict[str, Any]] = None
                      ) -> Iterable[PredictionResult]:
        import tensorflow as tf

        columns = {name: tf.constant([getattr(pair, name) for pair in batch], tf.string) for name in Pair._fields}
        outputs = model(**columns)
        probabilities = outputs["probabilities"].numpy().tolist()

        def texts(key: str) -> list[str]:
            return [value.decode("utf-8") for value in outputs[key].numpy()] if key in outputs else [""] * len(batch)

        # Exports from before per-row validity fail the whole call instead (the dead letter's job).
        valid = outputs["valid"].numpy().tolist() if "valid" in outputs else [True] * len(batch)
        return [PredictionResult(None, Scores(tuple(p), bool(v), e, r))
                for p, v, e, r in zip(probabilities, valid, texts("error"), texts("reason"))]

    def get_num_bytes(self, batch: Sequence[Pair]) -> int:
        return sum(len(value) for pair in batch for value in pair)

    def get_metrics_namespace(self) -> str:
        return "multimodal_entailment"
