"""A BERT encoder in plain TF ops, saved in the TF Hub format the trainer loads.

One architecture serves two sources: `model/local_encoders.py` builds it with random weights
(tests and the offline demo), and `model/import_hf.py` fills it with a Hugging Face
checkpoint's weights. It is the post-norm BERT of Devlin et al. as Hugging Face's `BertModel`
computes it: absolute position embeddings, exact (erf) or tanh-approximate GELU, layer norm
with the checkpoint's epsilon, and `pooled_output` = tanh(dense([CLS])). The SavedModel is
Keras-free, like TF Hub's reusable SavedModels, so `model.encoders.HubTextEncoder` loads it
with `hub.load` under Keras 3, and fine-tuning updates these very variables.

Weights (`BertWeights`, numpy arrays), laid out for `x @ W` (Hugging Face stores [out, in]):
`qkv` is [H, 3H], its columns the query, then key, then value projections, each [heads × size].
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from pipeline.features import TOKEN_KEYS
ACTIVATIONS = {"gelu": False, "gelu_tanh": True}  # Name → tf.nn.gelu's `approximate`.
# Per-layer weights, in `BertEncoder.blocks` order.
BLOCK_WEIGHTS = ("qkv", "qkv_bias", "attention_out", "attention_out_bias", "attention_norm_gamma",
                 "attention_norm_beta", "ffn_in", "ffn_in_bias", "ffn_out", "ffn_out_bias",
                 "ffn_norm_gamma", "ffn_norm_beta")


@dataclasses.dataclass(frozen=True)
class BertShape:
    """What the architecture is, besides its weights (Hugging Face config names in brackets).

    Attributes:
      hidden: Width of every token's vector (hidden_size).
      layers: Transformer blocks (num_hidden_layers).
      heads: Attention heads (num_attention_heads); must divide `hidden`.
      intermediate: Width of the feed-forward layer (intermediate_size).
      max_length: Positions the position embeddings cover (max_position_embeddings).
      type_vocab_size: Segment ids the type embeddings cover (type_vocab_size).
      norm_epsilon: Layer-norm epsilon (layer_norm_eps).
      activation: `gelu` (exact, erf) or `gelu_tanh` (the tanh approximation) (hidden_act).
      hidden_dropout: Dropout on embeddings and block outputs in training (hidden_dropout_prob).
      attention_dropout: Dropout on attention probabilities in training (attention_probs_dropout_prob).
    """

    hidden: int = 32
    layers: int = 2
    heads: int = 2
    intermediate: int = 128
    max_length: int = 512
    type_vocab_size: int = 2
    norm_epsilon: float = 1e-12
    activation: str = "gelu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1

    def check(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden size {self.hidden} is not divisible by {self.heads} attention heads")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, not {self.activation!r}")


@dataclasses.dataclass
class BertWeights:
    """Every weight of a `BertEncoder`, as float32 numpy arrays (see the module docstring)."""

    word_embeddings: np.ndarray
    position_embeddings: np.ndarray
    type_embeddings: np.ndarray
    embedding_norm_gamma: np.ndarray
    embedding_norm_beta: np.ndarray
    blocks: list[dict[str, np.ndarray]]
    pooler: np.ndarray
    pooler_bias: np.ndarray


def random_weights(vocab_size: int, shape: BertShape, seed: int = 0) -> BertWeights:
    """Truncated-normal (stddev 0.02) matrices and embeddings, zero biases, unit gammas."""
    counter = iter(range(10_000))

    def normal(*dims):
        return tf.random.stateless_truncated_normal(dims, seed=[seed, next(counter)], stddev=0.02).numpy()

    h, f = shape.hidden, shape.intermediate
    zeros, ones = (lambda n: np.zeros(n, np.float32)), (lambda n: np.ones(n, np.float32))
    blocks = [{
        "qkv": normal(h, 3 * h), "qkv_bias": zeros(3 * h),
        "attention_out": normal(h, h), "attention_out_bias": zeros(h),
        "attention_norm_gamma": ones(h), "attention_norm_beta": zeros(h),
        "ffn_in": normal(h, f), "ffn_in_bias": zeros(f),
        "ffn_out": normal(f, h), "ffn_out_bias": zeros(h),
        "ffn_norm_gamma": ones(h), "ffn_norm_beta": zeros(h),
    } for _ in range(shape.layers)]
    return BertWeights(normal(vocab_size, h), normal(shape.max_length, h), normal(shape.type_vocab_size, h),
                       ones(h), zeros(h), blocks, normal(h, h), zeros(h))


class BertEncoder(tf.Module):
    """TF Hub BERT interface: `encoder(dict(input_word_ids=, input_mask=, input_type_ids=),
    training=...)` → `pooled_output` [B, H] and `sequence_output` [B, L, H]; with the
    `vocab_file` asset and the `do_lower_case` flag that Hub BERT models carry."""

    # Saved as plain attributes, as TF Hub's reusable SavedModels do (tf.Module computes them).
    variables = None
    trainable_variables = None

    def __init__(self, vocab_file: str, do_lower_case: bool, shape: BertShape, weights: BertWeights,
                 name: str = "bert_encoder"):
        super().__init__(name=name)
        shape.check()
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        self.do_lower_case = tf.Variable(do_lower_case, trainable=False, name="do_lower_case")
        self._shape = shape

        def variable(value, name):
            return tf.Variable(np.asarray(value, np.float32), name=name)

        self.word_embeddings = variable(weights.word_embeddings, "word_embeddings")
        self.position_embeddings = variable(weights.position_embeddings, "position_embeddings")
        self.type_embeddings = variable(weights.type_embeddings, "type_embeddings")
        self.embedding_norm = (variable(weights.embedding_norm_gamma, "embedding_norm_gamma"),
                               variable(weights.embedding_norm_beta, "embedding_norm_beta"))
        self.blocks = [{key: variable(block[key], f"layer_{index}_{key}") for key in BLOCK_WEIGHTS}
                       for index, block in enumerate(weights.blocks)]
        self.pooler = variable(weights.pooler, "pooler")
        self.pooler_bias = variable(weights.pooler_bias, "pooler_bias")
        trainable = [self.word_embeddings, self.position_embeddings, self.type_embeddings, *self.embedding_norm]
        for block in self.blocks:
            trainable += [block[key] for key in BLOCK_WEIGHTS]
        trainable += [self.pooler, self.pooler_bias]
        self.trainable_variables = list(trainable)
        self.variables = list(trainable) + [self.do_lower_case]

    def _norm(self, x, gamma, beta):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + self._shape.norm_epsilon) * gamma + beta

    @staticmethod
    def _drop(x, rate, training):
        return tf.nn.dropout(x, rate=rate) if training and rate else x

    def _encode(self, inputs, training: bool):
        shape = self._shape
        word_ids = tf.cast(inputs["input_word_ids"], tf.int32)
        mask = tf.cast(inputs["input_mask"], tf.float32)
        type_ids = tf.cast(inputs["input_type_ids"], tf.int32)
        length = tf.shape(word_ids)[1]
        tf.debugging.assert_less_equal(length, shape.max_length,
                                       message=f"inputs are longer than the encoder's {shape.max_length} positions")
        x = (tf.gather(self.word_embeddings, word_ids) + tf.gather(self.type_embeddings, type_ids)
             + self.position_embeddings[tf.newaxis, :length])
        x = self._drop(self._norm(x, *self.embedding_norm), shape.hidden_dropout, training)
        batch, size = tf.shape(x)[0], shape.hidden // shape.heads
        # Hugging Face adds the dtype's minimum to masked scores; any value this far below the
        # real scores gives the same probabilities (exp underflows to 0 in float32).
        attention_bias = (1.0 - mask[:, tf.newaxis, tf.newaxis, :]) * -10000.0
        approximate = ACTIVATIONS[shape.activation]
        for block in self.blocks:
            qkv = tf.einsum("bld,de->ble", x, block["qkv"]) + block["qkv_bias"]
            qkv = tf.reshape(qkv, [batch, length, 3, shape.heads, size])
            q, k, v = (tf.transpose(qkv[:, :, i], [0, 2, 1, 3]) for i in range(3))
            scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(size) + attention_bias
            probabilities = self._drop(tf.nn.softmax(scores), shape.attention_dropout, training)
            context = tf.reshape(tf.transpose(tf.matmul(probabilities, v), [0, 2, 1, 3]), [batch, length, shape.hidden])
            attended = tf.einsum("bld,de->ble", context, block["attention_out"]) + block["attention_out_bias"]
            x = self._norm(x + self._drop(attended, shape.hidden_dropout, training),
                           block["attention_norm_gamma"], block["attention_norm_beta"])
            hidden = tf.nn.gelu(tf.einsum("bld,de->ble", x, block["ffn_in"]) + block["ffn_in_bias"], approximate=approximate)
            out = tf.einsum("ble,ed->bld", hidden, block["ffn_out"]) + block["ffn_out_bias"]
            x = self._norm(x + self._drop(out, shape.hidden_dropout, training),
                           block["ffn_norm_gamma"], block["ffn_norm_beta"])
        pooled = tf.tanh(tf.matmul(x[:, 0], self.pooler) + self.pooler_bias)
        return {"pooled_output": pooled, "sequence_output": x}

    @tf.function
    def __call__(self, inputs, training=False):
        if training:
            return self._encode(inputs, True)
        return self._encode(inputs, False)


def save_encoder(module: tf.Module, out_dir: str) -> str:
    """Saves a TF Hub-format text encoder with both modes traced; returns out_dir."""
    spec = {key: tf.TensorSpec([None, None], tf.int32) for key in TOKEN_KEYS}
    # Trace both modes, as TF Hub's reusable SavedModels do.
    for training in (False, True):
        module.__call__.get_concrete_function(spec, training=training)
    tf.saved_model.save(module, out_dir)
    return out_dir
