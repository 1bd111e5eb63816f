"""``python -m mixforget.cli``: the ``mixforget`` command line."""

import sys

from .main import main

sys.exit(main())
