"""``python -m xanes_agent`` is the ``xanes-agent`` command."""

import sys

from .cli import main

sys.exit(main())
