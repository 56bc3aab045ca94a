# Thin wrappers over `python -m ...`; every target works on a fresh clone (it installs first).
PYTHON ?= .venv/bin/python
DATA ?= data/demo
SHARDS ?= data/shards
PAIRS ?= 400
BEAM_ARGS ?=

.PHONY: install data shards encoders train test bench clean

install: .venv/.installed

.venv/.installed: setup.py
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -e ".[test]"
	touch $@

data: $(DATA)/tweets.csv

$(DATA)/tweets.csv: | install
	$(PYTHON) -m pipeline.synthetic --out $(DATA) --pairs $(PAIRS)

shards: data
	$(PYTHON) -m pipeline.run --csv $(DATA)/tweets.csv --images $(DATA)/images \
		--vocab $(DATA)/vocab.txt --out $(SHARDS) --overwrite $(BEAM_ARGS)

encoders: data
	$(PYTHON) -m model.local_encoders --vocab $(DATA)/vocab.txt --out data/encoders

# Offline training on the demo shards with the small local encoders (tiny BERT, small CNN).
train: shards encoders
	$(PYTHON) -m trainer.task --data-dir $(SHARDS) --job-dir out/demo \
		--text-encoder data/encoders/tiny_bert --image-encoder tiny --image-weights none \
		--train-text-encoder --loss weighted-ce --epochs 5

test: install
	$(PYTHON) -m pytest -q tests

bench: install
	$(PYTHON) -m benchmarks.preprocessing --out benchmarks/results.md

clean:
	rm -rf data out build *.egg-info .pytest_cache
