"""Quiet command lines: TensorFlow's start-up lines and Beam's INFO logs only when asked for.

TensorFlow 2.21 prints its oneDNN, CUDA and CPU-feature lines from C++ before its logging
is initialised, so `TF_CPP_MIN_LOG_LEVEL` cannot hide them. `import_tensorflow` imports it
with the process's stderr pointed at /dev/null for the length of the import; a failing
import still raises its Python error after stderr is back. `--verbose` keeps everything.
"""

from __future__ import annotations

import logging
import os
import sys


def configure(verbose: bool) -> None:
    """Log levels for a command: INFO with `verbose`, otherwise warnings only (and TF quiet)."""
    # Level 3 hides TF's C++ errors too ("failed call to cuInit" on machines without a GPU);
    # real failures still reach Python as exceptions.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")
    # Errors only otherwise: Beam warns on the root logger, at every import, about optional GCP
    # clients it cannot find.
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.ERROR)


def import_tensorflow(verbose: bool = False):
    """`import tensorflow`, without its C++ start-up lines unless `verbose`."""
    if verbose or "tensorflow" in sys.modules:
        import tensorflow

        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow
