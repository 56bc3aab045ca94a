import sys

from pipeline.score.command import main

sys.exit(main())
