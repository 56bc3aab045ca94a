"""Everything before the trainer: the data's way from CSV files and images to shards, and back out.

Sub-packages, in the order the data meets them:

- `synthetic`, `download`: where tweet pairs come from (the offline demo's generator; the real
  data set, fetched and checked);
- `inputs`: CSV files → rows → valid `Record`s or rejections, and a row's image files: what
  both Beam jobs share;
- `preprocess`: TF ops that decode images and pack texts, run by the shards job and by the
  exported model's serving signature alike;
- `shards`: the Beam job that writes TFRecord shards (`python -m pipeline.shards`);
- `preview`: pairs of the shards drawn, with their stats (`python -m pipeline.preview`);
- `score`: the Beam job that scores new pairs with an exported model (`python -m pipeline.score`).

Shared modules: `features` (the one example schema, which the trainer and the export import
too), `launcher` (what both Beam jobs' command lines share), `cli` (what every command line
shares), `metrics` (the scores the trainer and the scoring job report). Nothing here imports
`model` or `trainer`.
"""

__version__ = "0.2.0"
