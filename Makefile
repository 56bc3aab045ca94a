# Thin wrappers over `python -m ...`; every target works on a fresh clone (it installs first).
PYTHON ?= .venv/bin/python
DATA ?= data/demo
SHARDS ?= data/shards
# The offline demo's sizes: enough pairs for the small encoders to learn from, images and
# sequences small enough to train on 2 CPU cores in minutes. The CLIs default to the
# baseline's 128 px and 128 tokens.
PAIRS ?= 4000
MIN_SIDE ?= 300
MAX_SIDE ?= 800
IMAGE_SIZE ?= 64
SEQ_LENGTH ?= 32
EPOCHS ?= 25
BEAM_ARGS ?=

.PHONY: install data shards encoders train demo test bench clean

install: .venv/.installed

.venv/.installed: setup.py
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -e ".[test]"
	touch $@

data: $(DATA)/tweets.csv

$(DATA)/tweets.csv: | install
	$(PYTHON) -m pipeline.synthetic --out $(DATA) --pairs $(PAIRS) --min-side $(MIN_SIDE) --max-side $(MAX_SIDE)

shards: data
	$(PYTHON) -m pipeline.run --csv $(DATA)/tweets.csv --images $(DATA)/images \
		--vocab $(DATA)/vocab.txt --out $(SHARDS) --overwrite \
		--image-size $(IMAGE_SIZE) --seq-length $(SEQ_LENGTH) $(BEAM_ARGS)

encoders: data
	$(PYTHON) -m model.local_encoders --vocab $(DATA)/vocab.txt --out data/encoders

# Offline training on the demo shards with the small local encoders (tiny BERT, small CNN),
# both fine-tuned since they start from random weights.
train: shards encoders
	$(PYTHON) -m trainer.task --data-dir $(SHARDS) --job-dir out/demo \
		--text-encoder data/encoders/tiny_bert --image-encoder tiny --image-weights none \
		--image-size $(IMAGE_SIZE) --seq-length $(SEQ_LENGTH) --train-text-encoder --train-image-encoder \
		--projection-dims 64 --loss weighted-ce --epochs $(EPOCHS)

# The README's main command: data → shards → encoders → train → evaluate → export → predict.
demo: train
	$(PYTHON) -m model.predict --model out/demo/model/serving --csv $(DATA)/tweets.csv --images $(DATA)/images --rows 5

test: install
	$(PYTHON) -m pytest -q tests

bench: install
	$(PYTHON) -m benchmarks.preprocessing --out benchmarks/results.md
	$(PYTHON) -m benchmarks.memory --out benchmarks/memory.md
	$(PYTHON) -m benchmarks.training --out benchmarks/training.md

clean:
	rm -rf data out build *.egg-info .pytest_cache
