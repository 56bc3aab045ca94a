"""One installable distribution: the Beam job ships it to Dataflow workers with --setup_file."""

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
]
PIPELINE = [
    # [tfrecord] brings crcmod; google-crc32c makes TFRecord checksums fast.
    "apache-beam[tfrecord]==2.77.0",
    "google-crc32c>=1.5,<2",
]
# No scikit-learn: Keras imports it at every `import tensorflow` when it is installed (0.8 s
# per process); `trainer/evaluation.py` computes its few metrics itself.
TRAINER = [
    "matplotlib>=3.8,<4",
    "tensorboard>=2.21,<2.22",
]

setuptools.setup(
    name="multimodal-entailment",
    version=VERSION,
    description="Beam preprocessing, Keras training and serving for multimodal (text + image) tweet entailment",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*", "model", "model.*", "trainer", "trainer.*"]),
    install_requires=CORE + PIPELINE + TRAINER,
    extras_require={
        "test": ["pytest>=8,<10"],
        "gcp": ["apache-beam[gcp,tfrecord]==2.77.0"],
    },
)
