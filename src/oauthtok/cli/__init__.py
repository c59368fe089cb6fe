"""The command line: parse, prompt, render. The use cases decide (`oauthtok.manager`).

`app` (the Typer application) is in `oauthtok.cli.app`; this package's own import is light, so
that `views` and `output` can serve the commands the launcher answers before Typer loads.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms to import: `list` and `show` answer without it
if TYPE_CHECKING:
    from typing import Any


def main() -> None:
    from oauthtok.cli.app import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":
        from oauthtok.cli.app import app

        return app
    raise AttributeError(name)
