"""`python -m lamina.cli` runs the `lamina` command."""

from lamina.cli import main

main()
