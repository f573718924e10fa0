import sys

from colearn_core.cli import main

sys.exit(main())
