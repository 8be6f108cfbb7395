"""``python -m layerdiff``: the same as the ``layerdiff`` command."""

import sys

from layerdiff.cli import main

sys.exit(main())
