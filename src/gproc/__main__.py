"""``python -m gproc``: the same as the ``gproc`` command."""

from ._cli import main

raise SystemExit(main())
