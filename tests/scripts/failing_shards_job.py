"""`python tests/scripts/failing_shards_job.py SHARDS_FLAGS...`: the shards job with every row's
encoding failing as a full disk would (OSError 28), to see what the command line prints."""

import os
import sys

sys.path.insert(0, os.getcwd())

from pipeline import cli  # noqa: E402

# As the command does before its imports, so that only the job's own output is left to check.
cli.configure_logs("--verbose" in sys.argv)
cli.import_tensorflow("--verbose" in sys.argv)

from pipeline.shards import command, stage3_encode  # noqa: E402


def fail(self, item):
    raise OSError(28, "No space left on device")


stage3_encode.PreprocessFn.process = fail
sys.exit(command.main(sys.argv[1:]))
