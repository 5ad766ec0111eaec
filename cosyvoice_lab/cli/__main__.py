"""``python -m cosyvoice_lab.cli``: the ``cosyvoice-lab`` command."""

import sys

from cosyvoice_lab.cli.main import main

sys.exit(main())
