"""`python -m orchestration.bench` (`make bench`): the world-generation benchmark."""

import sys

from orchestration.bench.generation import main

sys.exit(main())
