import sys

from pipeline.preview.command import main

sys.exit(main())
