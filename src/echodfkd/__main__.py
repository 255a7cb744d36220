import sys

from echodfkd.cli import main

sys.exit(main())
