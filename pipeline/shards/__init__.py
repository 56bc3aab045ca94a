"""The shards job: CSV files of tweet pairs + an images folder → TFRecord shards per split.

`python -m pipeline.shards` (`make shards`). Its modules, in the order the data passes them:

1. `stage1_read`: CSV files → rows → `Record`s or rejections, duplicate pairs dropped (the
   scoring job reads with it too);
2. `stage2_split`: each pair's split, stratified and exact, computed in bounded pieces;
3. `stage3_encode`: images decoded and resized, texts packed into BERT inputs (both with the
   `pipeline.preprocess` ops the served model runs), examples serialized (`pipeline.features`);
4. `stage4_write`: shards and rejected.jsonl, written by bundles and joined per file;
5. `stage5_metadata`: counts and fingerprints, metadata.json written last as the completion mark.

`job` wires the stages into one transform, `settings` is what workers are told (and the
flags), `command` launches it through `pipeline.launcher`.
"""
