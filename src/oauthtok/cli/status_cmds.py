"""`status`: the environment and each token's health, for people and for monitoring."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from oauthtok.cli.app import commands
from oauthtok.cli.options import AsJson, complete_names
from oauthtok.cli.output import emit_json, humanize_seconds, lapses_in, print_table, say

if TYPE_CHECKING:
    from oauthtok.health import Report


def ago(ts: float | None, now: float) -> str:
    return "-" if ts is None else f"{humanize_seconds(now - ts)} ago"


def render(report: Report) -> None:
    from oauthtok.cli.output import expires_in

    now = time.time()
    width = max(len(key) for key, _ in report.environment())
    for key, part in report.environment():
        print(f"{key.ljust(width)}  {part.summary}")
        if part.problem:
            print(f"{''.ljust(width)}  problem: {part.problem}")
    if not report.tokens:
        print("\nNo tokens to show.")
        return
    print()
    rows = [
        [
            t.record.name,
            t.record.account or "-",
            t.evaluation.state,
            expires_in(t.record, now),
            lapses_in(t.evaluation.lapses_at, now),
            ago(t.last_refresh, now),
            t.record.last_error or "-",
        ]
        for t in report.tokens
    ]
    columns = ["NAME", "ACCOUNT", "STATUS", "EXPIRES IN", "LAPSES IN", "LAST REFRESH", "LAST ERROR"]
    print_table(columns, rows, keep=["NAME", "STATUS"])
    for t in report.tokens:
        lines = []
        if t.evaluation.state != "ok":
            lines.append(f"{t.record.name}: {t.evaluation.state}: {t.evaluation.reason}")
            if t.evaluation.fix:
                lines.append(f"  fix: {t.evaluation.fix}")
        if t.check is not None:
            lines.append(f"{t.record.name}: check: {'ok' if t.check.ok else 'failed'}: "
                         f"{t.check.detail}")  # fmt: skip
        for line in lines:
            print(line)


@commands.command("status")
def status_command(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Token names (default: every token).", autocompletion=complete_names,
            show_default=False,
        ),
    ] = None,
    as_json: AsJson = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q",
            help="Print nothing: only raise the notifications and set the exit code.",
        ),
    ] = False,
    warn_days: Annotated[
        int,
        typer.Option(
            "--warn-days", min=0, metavar="N",
            help="Attention (exit 9) when a grant lapses, or a client secret expires, within N "
            "days.",
        ),
    ] = 14,
    check: Annotated[
        bool,
        typer.Option("--check", help="Prove each grant at the provider (refresh it)."),
    ] = False,
) -> None:  # fmt: skip
    """The secret store, config, catalog, data folder and clock, and each token's health.

    Exit 0 when everything is fine, 4 when a token needs re-authorization, 9 when a grant
    lapses (or a client secret expires) within --warn-days, 8 when the secret store or the data
    folder is unusable, 7 when config.toml or the catalog is invalid, 6 when --check could not
    reach a provider. Raises the notifications of [notify] in config.toml.
    """
    from oauthtok.health import examine

    report = examine(names or [], warn_days=warn_days, check=check)
    for warning in report.warnings:
        # even with --quiet (cron, the journal): a notifier that fails must be heard
        say(f"oauthtok: warning: {warning}")
    if as_json and not quiet:
        emit_json(report.to_json())
    elif not quiet:
        render(report)
    raise typer.Exit(report.exit_code)
