"""Shared by the job files: import lakechain (installed, or from this checkout) and run one command."""

import os
import sys


def run(command: str, argv: list[str] | None = None) -> int:
    try:
        from lakechain.cli import main
    except ImportError:  # a source checkout without `pip install`
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
        from lakechain.cli import main
    return main([command, *(sys.argv[1:] if argv is None else argv)])
