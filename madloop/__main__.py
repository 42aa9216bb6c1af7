"""``python -m madloop``: the same command line as ``madloop``."""

from madloop.cli import main

main()
