"""The `oauthtok` entry point: `token` tries the fast path before the full CLI is imported."""

from __future__ import annotations

import os
import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["token"]:
        from oauthtok.fastpath import run

        code = run(args[1:])
        if code is not None:
            # skip interpreter shutdown (10-50 ms); stdout is already flushed
            os._exit(code)
    from oauthtok.cli import main as cli_main

    cli_main()
