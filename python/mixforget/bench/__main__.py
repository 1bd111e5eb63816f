"""``python -m mixforget.bench [--quick]``: the benchmark table."""

from .command import main

raise SystemExit(main())
