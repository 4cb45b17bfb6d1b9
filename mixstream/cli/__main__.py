"""``python -m mixstream.cli``: the same as the ``mixstream`` command."""

import sys

from mixstream.cli import main

sys.exit(main())
