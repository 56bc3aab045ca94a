import sys

from pipeline.shards.command import main

sys.exit(main())
