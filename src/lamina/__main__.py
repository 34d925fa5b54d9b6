"""`python -m lamina` runs the `lamina` command (as the `lamina` script does), for a
virtual environment whose scripts folder is not on PATH."""

from lamina.cli import entry

entry()
