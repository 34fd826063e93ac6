"""``python -m gimel_core.cli``: the ``gimel`` command without its console script."""

from . import main

main()
