"""`python tests/scripts/trainer_with_faults.py TRAINER_FLAGS...`: `python -m trainer.task` with a
SIGKILL injected where the resume tests ask, so that the trainer itself carries no test hooks.

TRAINER_TEST_KILL_AFTER_STEPS=N  dies after the N-th training batch, once its backup is written;
TRAINER_TEST_SIGTERM_AFTER_STEPS=N  sends itself SIGTERM (a preemption notice) after the N-th batch;
TRAINER_TEST_KILL_AT=export      dies as the export starts (training and evaluation done);
TRAINER_TEST_KILL_AT=cache-SPLIT dies once the embedding cache has written (and reported) SPLIT,
                                 as it starts on the next one.
"""

import os
import runpy
import signal
import sys

KILL_AFTER_STEPS_ENV = "TRAINER_TEST_KILL_AFTER_STEPS"
KILL_AT_ENV = "TRAINER_TEST_KILL_AT"
SIGTERM_AFTER_STEPS_ENV = "TRAINER_TEST_SIGTERM_AFTER_STEPS"


def with_faults(command: list[str]) -> list[str]:
    """A `python -m trainer.task ...` command line, run through this script instead."""
    at = command.index("-m")
    return [*command[:at], __file__, *command[at + 2:]]


def die(*_, **__):
    os.kill(os.getpid(), signal.SIGKILL)


def install() -> None:
    steps = int(os.environ.get(KILL_AFTER_STEPS_ENV) or os.environ.get(SIGTERM_AFTER_STEPS_ENV) or 0)
    point = os.environ.get(KILL_AT_ENV, "")
    if steps:
        from trainer import callbacks

        backup_after_batch = callbacks.ResumableBackup.on_train_batch_end
        seen = [0]
        fault = die if os.environ.get(KILL_AFTER_STEPS_ENV) else lambda: os.kill(os.getpid(), signal.SIGTERM)

        def on_train_batch_end(self, batch, logs=None):
            backup_after_batch(self, batch, logs)
            seen[0] += 1
            if seen[0] == steps:
                fault()

        callbacks.ResumableBackup.on_train_batch_end = on_train_batch_end
    if point == "export":
        from model import export

        export.export = die
    elif point.startswith("cache-"):
        from trainer import embedding_cache

        write_split = embedding_cache.EmbeddingCache._write_split
        done = []

        def die_after_the_split(self, split):
            if done and done[-1] == point[len("cache-"):]:
                die()
            done.append(split)
            return write_split(self, split)

        embedding_cache.EmbeddingCache._write_split = die_after_the_split


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    install()
    sys.argv = ["trainer.task", *sys.argv[1:]]
    runpy.run_module("trainer.task", run_name="__main__", alter_sys=True)
