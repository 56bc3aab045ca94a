"""Looking at the data: pairs of the shards drawn as a grid, and their stats.

`python -m pipeline.preview SHARDS_DIR` (`command`) draws pairs as stored (`pair_grid`, which
`trainer.error_analysis` draws its misclassified pairs with too) and writes the stats table
(`stats`) beside the picture.
"""
