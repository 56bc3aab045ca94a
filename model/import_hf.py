"""`python -m model.import_hf CHECKPOINT_DIR --out OUT_DIR`: a Hugging Face BERT checkpoint → TF Hub format.

    python -m model.import_hf ~/models/all-MiniLM-L6-v2 --out data/encoders/minilm
    python -m pipeline.run ... --text-encoder data/encoders/minilm
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

import argparse
import dataclasses
import hashlib
import json
import os
import posixpath
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

REPORT_FILE = "hf_import.json"
# Hugging Face `hidden_act` → `BertShape.activation` (gelu_new and gelu_pytorch_tanh are the same formula).
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
TASK_PREFIXES = ("bert.",)  # Where task models (BertFor...) keep the encoder.


class ImportRefused(ValueError):
    """The checkpoint is not one this importer reproduces exactly."""


def _join(folder: str, name: str) -> str:
    return posixpath.join(folder, name) if "://" in folder else os.path.join(folder, name)


def _read_json(path: str) -> dict | list | None:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


@dataclasses.dataclass
class Checkpoint:
    """What a checkpoint folder holds, read and checked (nothing converted yet)."""

    folder: str  # The folder with config.json (a sentence-transformers module's own path).
    config: dict
    tensors: dict[str, np.ndarray]  # Encoder weights under Hugging Face names, task prefix removed.
    ignored: list[str]  # Tensor names that are not the encoder's (task heads, buffers).
    vocab_file: str
    lowercase: bool
    pooling: str  # The pooling the checkpoint was trained for, in words.
    recommended_pooling: str  # `cls` or `mean`: the `--text-pooling` that matches it best.
    weights_sha256: str


def _sentence_transformers_modules(folder: str) -> tuple[str, dict | None, bool]:
    """(transformer folder, pooling config or None, normalised?) of a sentence-transformers folder."""
    modules = _read_json(_join(folder, "modules.json"))
    if modules is None:
        return folder, None, False
    transformer, pooling, normalize = folder, None, False
    for module in modules:
        kind = module.get("type", "")
        path = _join(folder, module["path"]) if module.get("path") else folder
        if kind.endswith(".Transformer"):
            transformer = path
        elif kind.endswith(".Pooling"):
            pooling = _read_json(_join(path, "config.json")) or {}
        elif kind.endswith(".Normalize"):
            normalize = True
    return transformer, pooling, normalize


def _describe_pooling(pooling: dict | None, normalize: bool, has_pooler: bool) -> tuple[str, str]:
    """What the checkpoint was trained to pool, in words, and the closest `--text-pooling`."""
    if pooling is None:
        if has_pooler:
            return "cls (BertModel's pooler on [CLS], as TF Hub BERT)", "cls"
        return "none recorded, and the checkpoint has no pooler (its pooled_output is untrained)", "mean"
    modes = [key[len("pooling_mode_"):] for key, on in pooling.items() if key.startswith("pooling_mode_") and on is True]
    words = "sentence-transformers " + " + ".join(modes or ["(no mode set)"]) + " pooling"
    words += ", then L2-normalised" if normalize else ""
    if modes == ["mean_tokens"]:
        return words, "mean"
    if modes == ["cls_token"]:
        return words + " (the raw [CLS] vector; --text-pooling cls puts BertModel's pooler on it)", "cls"
    return words + " (not offered here; mean is the nearest)", "mean"


def _tokenizer_casing(folder: str) -> bool:
    """Lower-casing from tokenizer_config.json, refusing options `PairTokenizer` cannot reproduce."""
    settings = _read_json(_join(folder, "tokenizer_config.json")) or {}
    lowercase = bool(settings.get("do_lower_case", True))  # BertTokenizer's default.
    kind = settings.get("tokenizer_class")
    if kind and "BertTokenizer" not in kind:
        raise ImportRefused(f"tokenizer_class {kind} is not a WordPiece BertTokenizer")
    strip_accents = settings.get("strip_accents")
    if strip_accents is not None and bool(strip_accents) != lowercase:
        raise ImportRefused(f"strip_accents={strip_accents} with do_lower_case={lowercase}: TF Text strips accents "
                            "exactly when it lower-cases")
    for flag in ("tokenize_chinese_chars", "do_basic_tokenize"):
        if settings.get(flag) is False:
            raise ImportRefused(f"{flag}=false: TF Text's BERT tokenizer always does it")
    return lowercase


def check_config(config: dict) -> None:
    """Refuses configurations `BertEncoder` does not compute exactly."""
    model_type = config.get("model_type")
    if model_type != "bert":
        raise ImportRefused(f"model_type {model_type!r} is not bert (architectures: {config.get('architectures')})")
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise ImportRefused(f"position_embedding_type {position!r}: only absolute positions are implemented")
    if config.get("hidden_act") not in ACTIVATIONS:
        raise ImportRefused(f"hidden_act {config.get('hidden_act')!r}: only {', '.join(ACTIVATIONS)} are implemented")
    for flag in ("is_decoder", "add_cross_attention"):
        if config.get(flag):
            raise ImportRefused(f"{flag}=true: only encoders are imported")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ImportRefused("hidden_size is not divisible by num_attention_heads")


def _load_tensors(folder: str) -> tuple[dict[str, np.ndarray], str]:
    """All tensors of model.safetensors (or its shards), and a SHA-256 over the files read."""
    import tensorflow as tf
    from safetensors.numpy import load

    index = _read_json(_join(folder, "model.safetensors.index.json"))
    files = sorted(set(index["weight_map"].values())) if index else ["model.safetensors"]
    tensors, digest = {}, hashlib.sha256()
    for name in files:
        path = _join(folder, name)
        if not tf.io.gfile.exists(path):
            hint = " (only pytorch_model.bin? save it with safetensors first)" if name == "model.safetensors" else ""
            raise FileNotFoundError(f"{path} does not exist{hint}")
        with tf.io.gfile.GFile(path, "rb") as handle:
            data = handle.read()
        digest.update(data)
        try:
            # From the bytes already read for the digest (local or gs://): each file is read once.
            tensors.update(load(data))
        except KeyError as error:  # safetensors.numpy has no bfloat16 (numpy has none).
            raise ImportRefused(f"{name} holds {error} tensors, which numpy cannot read; save it as float32") from None
        del data
    return tensors, digest.hexdigest()


def _encoder_tensors(tensors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The encoder's tensors under BertModel names (task prefix removed), and the names left out."""
    prefix = next((p for p in TASK_PREFIXES if any(name.startswith(p) for name in tensors)), "")
    encoder, ignored = {}, []
    for name, value in tensors.items():
        short = name[len(prefix):] if name.startswith(prefix) else None
        if short is not None and short.endswith("position_ids"):
            continue  # An index buffer (0, 1, 2, ...), not a weight.
        if short is None:
            ignored.append(name)  # Task heads: classifier, cls.predictions.
        else:
            # Checkpoints converted from TF BERT name the layer norms gamma/beta.
            encoder[short.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")] = value
    return encoder, sorted(ignored)


def read_checkpoint(folder: str) -> Checkpoint:
    """Reads and checks a checkpoint folder; raises ImportRefused or FileNotFoundError."""
    import tensorflow as tf

    from pipeline.bert_inputs import read_vocab

    transformer, pooling_config, normalize = _sentence_transformers_modules(folder)
    config = _read_json(_join(transformer, "config.json"))
    if config is None:
        raise FileNotFoundError(f"{_join(transformer, 'config.json')} does not exist: not a Hugging Face checkpoint folder")
    check_config(config)
    vocab_file = _join(transformer, "vocab.txt")
    if not tf.io.gfile.exists(vocab_file):
        raise FileNotFoundError(f"{vocab_file} does not exist (a WordPiece vocab.txt is needed)")
    vocab_size = len(read_vocab(vocab_file))
    if vocab_size != config["vocab_size"]:
        raise ImportRefused(f"vocab.txt has {vocab_size} tokens, config.json says vocab_size {config['vocab_size']}")
    lowercase = _tokenizer_casing(transformer)
    tensors, digest = _load_tensors(transformer)
    encoder, ignored = _encoder_tensors(tensors)
    pooling, recommended = _describe_pooling(pooling_config, normalize, "pooler.dense.weight" in encoder)
    return Checkpoint(transformer, config, encoder, ignored, vocab_file, lowercase, pooling, recommended, digest)


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
        with tf.io.gfile.GFile(_join(out_dir, REPORT_FILE), "w") as handle:
            json.dump(report, handle, indent=1)
    except BaseException:
        if tf.io.gfile.exists(out_dir):
            tf.io.gfile.rmtree(out_dir)  # A half-written encoder must not look usable.
        raise
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.import_hf", description=__doc__.split("\n")[0].split(": ", 1)[1])
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="Hugging Face checkpoint folder (local or gs://)")
    parser.add_argument("--out", required=True, help="folder to write the TF Hub-format encoder to (local or gs://)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = parser.parse_args(argv)
    from pipeline import logs

    logs.import_tensorflow()
    import tensorflow as tf

    try:
        if tf.io.gfile.exists(args.out) and tf.io.gfile.listdir(args.out):
            if not args.overwrite:
                raise ImportRefused(f"--out {args.out} is not empty; pass --overwrite to replace it")
            tf.io.gfile.rmtree(args.out)
        report = import_checkpoint(args.checkpoint, args.out)
    except (ValueError, FileNotFoundError, KeyError) as error:
        text = str(error).strip("'\"") if not isinstance(error, KeyError) else f"config.json lacks {error}"
        print(f"error: {text.splitlines()[0] if text else type(error).__name__}", file=sys.stderr)
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
