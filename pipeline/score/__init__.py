"""The batch scoring job: new pairs (CSV + images) → predictions of an exported model.

`python -m pipeline.score` (`make score`): rows are read and checked with the shards job's own
code (`pipeline.shards.stage1_read`, `pipeline.inputs`), the images' headers checked before the
model, and the pairs scored through Beam's RunInference with the export's serving signature,
which runs the shards job's preprocessing. `command` launches it (`pipeline.launcher`), `job`
wires the stages, `inference` is RunInference's model handler for the signature.
"""
