"""``python -m rqa_otel.cli``: the same as the ``rqa-otel`` command."""

import sys

from rqa_otel.cli import main

sys.exit(main())
