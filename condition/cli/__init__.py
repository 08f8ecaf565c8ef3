"""The command line, on top of everything else: `main.py` (the click group and entry point),
`commands/` (one module per sub-command), the progress bar and the run summary. Nothing below
this package imports it."""
from condition.cli.main import cli, entry_point, main

__all__ = ["cli", "entry_point", "main"]
