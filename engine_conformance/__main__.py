"""``python -m engine_conformance`` is the ``engine-conformance`` command."""

import sys

from engine_conformance.run.cli import main

sys.exit(main())
