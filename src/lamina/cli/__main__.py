"""`python -m lamina.cli` runs the `lamina` command (as the `lamina` script does)."""

from lamina.cli import entry

entry()
