"""The model: encoders, the entailment head, losses, and the exported serving model.

- `config`: `ModelConfig`, what the model is made of (the trainer's model flags; no Keras);
- `encoders`: Keras 3 layers over TF Hub-format BERT SavedModels, and the image encoders;
- `bert_encoder`: BERT in plain TF ops, saved in the TF Hub format; `local_encoders` builds small
  ones for tests and the demo; `hf_checkpoint` + `import_hf` fill it from Hugging Face checkpoints;
- `multimodal`: the model, as encoders and a head (so frozen encoders can be cached);
- `losses`: the training losses by name;
- `export`: the SavedModel whose signature takes raw texts and image bytes; `predict` scores with it.
"""
