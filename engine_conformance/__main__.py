"""``python -m engine_conformance`` is the ``engine-conformance`` command."""

import sys

from .cli import main

sys.exit(main())
