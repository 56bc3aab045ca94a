"""A Hugging Face BERT checkpoint folder, read and checked: what `model.import_hf` converts.

The folder (local or gs://) holds `config.json`, `model.safetensors` (or a sharded
`model.safetensors.index.json`) and `vocab.txt`, and `tokenizer_config.json` for the casing when
it has one. `BertModel` checkpoints, the `bert.`-prefixed encoder of task models
(`BertForSequenceClassification`, ...), and sentence-transformers folders (`modules.json`: the
transformer's own folder and the pooling it was trained with) are read. Whatever the encoder
cannot reproduce exactly is refused here, with `ImportRefused` and one line saying why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath

import numpy as np

# Hugging Face `hidden_act` → `BertShape.activation` (gelu_new and gelu_pytorch_tanh are the same formula).
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
TASK_PREFIXES = ("bert.",)  # Where task models (BertFor...) keep the encoder.


class ImportRefused(ValueError):
    """The checkpoint is not one this importer reproduces exactly."""


def join(folder: str, name: str) -> str:
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
    modules = _read_json(join(folder, "modules.json"))
    if modules is None:
        return folder, None, False
    transformer, pooling, normalize = folder, None, False
    for module in modules:
        kind = module.get("type", "")
        path = join(folder, module["path"]) if module.get("path") else folder
        if kind.endswith(".Transformer"):
            transformer = path
        elif kind.endswith(".Pooling"):
            pooling = _read_json(join(path, "config.json")) or {}
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
    settings = _read_json(join(folder, "tokenizer_config.json")) or {}
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

    index = _read_json(join(folder, "model.safetensors.index.json"))
    files = sorted(set(index["weight_map"].values())) if index else ["model.safetensors"]
    tensors, digest = {}, hashlib.sha256()
    for name in files:
        path = join(folder, name)
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

    from pipeline.preprocess.bert_inputs import read_vocab

    transformer, pooling_config, normalize = _sentence_transformers_modules(folder)
    config = _read_json(join(transformer, "config.json"))
    if config is None:
        raise FileNotFoundError(f"{join(transformer, 'config.json')} does not exist: not a Hugging Face checkpoint folder")
    check_config(config)
    vocab_file = join(transformer, "vocab.txt")
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
