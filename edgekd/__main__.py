"""`python -m edgekd` (also what torchrun launches)."""

from edgekd.cli import main

main()
