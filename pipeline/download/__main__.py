import sys

from pipeline.download.real_data import main

sys.exit(main())
