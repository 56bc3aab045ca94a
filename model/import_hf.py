"""`python -m model.import_hf CHECKPOINT_DIR --out OUT_DIR`: a Hugging Face BERT checkpoint → TF Hub format.

    python -m model.import_hf ~/models/all-MiniLM-L6-v2 --out data/encoders/minilm
    python -m pipeline.shards ... --text-encoder data/encoders/minilm
    python -m trainer.task ... --text-encoder data/encoders/minilm --text-pooling mean

The checkpoint is a folder (local or gs://) with `config.json`, `model.safetensors` (or a
sharded `model.safetensors.index.json`) and `vocab.txt`, and `tokenizer_config.json` for the
casing when it has one. `BertModel` checkpoints, the `bert.`-prefixed ones of task models
(`BertForSequenceClassification`, ...), and sentence-transformers folders (`modules.json`) are
read; their task heads are left out. The weights go into `model.bert_encoder.BertEncoder`, so
the result loads like any TF Hub BERT encoder, fine-tunes with `--train-text-encoder`, and
carries its vocabulary and casing for the Beam job and the export.

Only what `BertEncoder` computes exactly is imported: a checkpoint of another architecture,
with relative position embeddings, another activation, or a tokenizer that `vocab.txt` plus
the casing cannot reproduce is refused with one `error:` line. Hugging Face's own loaders
(transformers, keras-hub) are not used: transformers needs torch, and keras-hub's BERT uses the
tanh approximation of GELU where these checkpoints use the exact one.
The importer prints the pooling the checkpoint was trained for, and records it, with the
weights' digest, in `OUT_DIR/hf_import.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from model.hf_checkpoint import ACTIVATIONS, Checkpoint, ImportRefused, join, read_checkpoint  # noqa: E402
from pipeline.preprocess import ENCODER_REPORT_FILE  # noqa: E402

REPORT_FILE = ENCODER_REPORT_FILE


def bert_shape(config: dict):
    from model.bert_encoder import BertShape

    return BertShape(
        hidden=config["hidden_size"], layers=config["num_hidden_layers"], heads=config["num_attention_heads"],
        intermediate=config["intermediate_size"], max_length=config["max_position_embeddings"],
        type_vocab_size=config.get("type_vocab_size", 2), norm_epsilon=config.get("layer_norm_eps", 1e-12),
        activation=ACTIVATIONS[config["hidden_act"]], hidden_dropout=config.get("hidden_dropout_prob", 0.1),
        attention_dropout=config.get("attention_probs_dropout_prob", 0.1))


def to_weights(checkpoint: Checkpoint, seed: int = 0):
    """Hugging Face tensors ([out, in] linear weights, separate q/k/v) → `BertWeights` (x @ W).

    A checkpoint without a pooler (a masked-LM or sentence-embedding export) gets a random
    one, as `BertModel.from_pretrained` gives it; `Checkpoint.pooling` then says so.
    """
    from model.bert_encoder import BertWeights, random_weights

    tensors, shape = dict(checkpoint.tensors), bert_shape(checkpoint.config)

    def take(name, *dims):
        if name not in tensors:
            raise ImportRefused(f"the checkpoint has no tensor {name}")
        value = np.asarray(tensors.pop(name), np.float32)
        if value.shape != dims:
            raise ImportRefused(f"{name} has shape {value.shape}, config.json implies {dims}")
        return value

    h, f = shape.hidden, shape.intermediate
    linear = lambda name, out, inp: take(f"{name}.weight", out, inp).T  # noqa: E731
    bias = lambda name, n: take(f"{name}.bias", n)  # noqa: E731
    blocks = []
    for i in range(shape.layers):
        layer = f"encoder.layer.{i}."
        parts = [layer + f"attention.self.{part}" for part in ("query", "key", "value")]
        blocks.append({
            "qkv": np.concatenate([linear(p, h, h) for p in parts], axis=1),
            "qkv_bias": np.concatenate([bias(p, h) for p in parts]),
            "attention_out": linear(layer + "attention.output.dense", h, h),
            "attention_out_bias": bias(layer + "attention.output.dense", h),
            "attention_norm_gamma": take(layer + "attention.output.LayerNorm.weight", h),
            "attention_norm_beta": bias(layer + "attention.output.LayerNorm", h),
            "ffn_in": linear(layer + "intermediate.dense", f, h),
            "ffn_in_bias": bias(layer + "intermediate.dense", f),
            "ffn_out": linear(layer + "output.dense", h, f),
            "ffn_out_bias": bias(layer + "output.dense", h),
            "ffn_norm_gamma": take(layer + "output.LayerNorm.weight", h),
            "ffn_norm_beta": bias(layer + "output.LayerNorm", h),
        })
    vocab_size = checkpoint.config["vocab_size"]
    if "pooler.dense.weight" in tensors:
        pooler, pooler_bias = linear("pooler.dense", h, h), bias("pooler.dense", h)
    else:
        fresh = random_weights(vocab_size, dataclasses.replace(shape, layers=0), seed)
        pooler, pooler_bias = fresh.pooler, fresh.pooler_bias
    weights = BertWeights(
        word_embeddings=take("embeddings.word_embeddings.weight", vocab_size, h),
        position_embeddings=take("embeddings.position_embeddings.weight", shape.max_length, h),
        type_embeddings=take("embeddings.token_type_embeddings.weight", shape.type_vocab_size, h),
        embedding_norm_gamma=take("embeddings.LayerNorm.weight", h),
        embedding_norm_beta=take("embeddings.LayerNorm.bias", h),
        blocks=blocks, pooler=pooler, pooler_bias=pooler_bias)
    if tensors:
        raise ImportRefused(f"the checkpoint has encoder tensors this architecture lacks: {sorted(tensors)[:3]}")
    return weights


def import_checkpoint(folder: str, out_dir: str) -> dict:
    """Writes the TF Hub-format encoder to out_dir and returns the report saved beside it."""
    import tensorflow as tf

    from model.bert_encoder import BertEncoder, save_encoder

    checkpoint = read_checkpoint(folder)
    shape = bert_shape(checkpoint.config)
    encoder = BertEncoder(checkpoint.vocab_file, checkpoint.lowercase, shape, to_weights(checkpoint), name="hf_bert")
    try:
        save_encoder(encoder, out_dir)
        report = {
            "source": folder,
            "architectures": checkpoint.config.get("architectures"),
            "shape": dataclasses.asdict(shape),
            "vocab_size": checkpoint.config["vocab_size"],
            "do_lower_case": checkpoint.lowercase,
            "weights_sha256": checkpoint.weights_sha256,
            "trained_pooling": checkpoint.pooling,
            "recommended_text_pooling": checkpoint.recommended_pooling,
            "tensors_left_out": checkpoint.ignored,
        }
        with tf.io.gfile.GFile(join(out_dir, REPORT_FILE), "w") as handle:
            json.dump(report, handle, indent=1)
    except BaseException:
        if tf.io.gfile.exists(out_dir):
            tf.io.gfile.rmtree(out_dir)  # A half-written encoder must not look usable.
        raise
    return report


def main(argv: list[str] | None = None) -> int:
    from pipeline import cli

    parser = cli.Parser(prog="python -m model.import_hf", description=__doc__.split("\n")[0].split(": ", 1)[1])
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="Hugging Face checkpoint folder (local or gs://)")
    parser.add_argument("--out", required=True, help="folder to write the TF Hub-format encoder to (local or gs://)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = cli.parse(parser, argv)
    if isinstance(args, int):
        return args
    cli.import_tensorflow()
    import tensorflow as tf

    try:
        if tf.io.gfile.exists(args.out) and tf.io.gfile.listdir(args.out):
            if not args.overwrite:
                raise ImportRefused(f"--out {args.out} is not empty; pass --overwrite to replace it")
            tf.io.gfile.rmtree(args.out)
        report = import_checkpoint(args.checkpoint, args.out)
    except (ValueError, FileNotFoundError, KeyError) as error:
        text = str(error).strip("'\"") if not isinstance(error, KeyError) else f"config.json lacks {error}"
        print(f"error: {cli.first_line(text) or type(error).__name__}", file=sys.stderr)
        return 2
    shape = report["shape"]
    print(f"imported {', '.join(report['architectures'] or ['a BERT checkpoint'])}: {shape['layers']} layers, "
          f"hidden {shape['hidden']}, {shape['heads']} heads, vocabulary {report['vocab_size']} "
          f"({'uncased' if report['do_lower_case'] else 'cased'}), {shape['activation']} → {args.out}")
    if report["tensors_left_out"]:
        print(f"left out {len(report['tensors_left_out'])} tensors that are not the encoder's "
              f"(e.g. {report['tensors_left_out'][0]})")
    print(f"trained pooling: {report['trained_pooling']}")
    print(f"use: --text-encoder {args.out} --text-pooling {report['recommended_text_pooling']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
