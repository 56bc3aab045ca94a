"""From CSV files of tweet pairs and an images folder to validated TFRecord shards.

The job's stages, in the order the data passes them (`job.BuildShards` wires them):

1. `read`: CSV files → rows (`csv_records`: a broken record costs itself only) → `Record`s
   or rejections (`rows`), duplicates dropped;
2. `split`: each pair's split, stratified and exact, computed in bounded pieces;
3. `encode`: images decoded and resized (`image_headers`, `images`), texts packed into BERT
   inputs (`bert_inputs`), examples serialized (`features`, the one schema);
4. `write`: shards and rejected.jsonl, written by bundles and joined per file;
5. `metadata`: counts and fingerprints, written last as the completion mark.

`run` is the command line and `settings` what workers are told. `images`, `image_headers`
and `bert_inputs` are TF ops that the exported model's serving signature runs too.
"""

__version__ = "0.2.0"
