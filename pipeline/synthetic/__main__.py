import sys

from pipeline.synthetic.pairs import main

sys.exit(main())
