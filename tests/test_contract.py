"""The fast path and the full CLI agree: the same arguments give the same parameters (or both
refuse), and the same command line gives the same output, exit code and error."""

from __future__ import annotations

import contextlib
import functools
import io
from typing import Any

import pytest
import typer.main

from oauthtok import contract, fastpath
from oauthtok.cli.app import app

FORMS = [
    ["mail"],
    ["mail", "--format", "json"],
    ["mail", "--format=json"],
    ["mail", "-f", "header"],
    ["mail", "-fheader"],
    ["mail", "-f=json"],  # click reads "=json": refused by both
    ["mail", "--format", "JSON"],  # case-insensitive
    ["mail", "--format", "Raw"],
    ["mail", "--format", "xml"],
    ["mail", "--format="],
    ["mail", "--format"],
    ["--format", "json", "mail"],
    ["mail", "--min-valid", "120"],
    ["mail", "--min-valid=0"],
    ["mail", "--min-valid", "1e3"],
    ["mail", "--min-valid", "1_000"],
    ["mail", "--min-valid", " 5 "],
    ["mail", "--min-valid", "-1"],
    ["mail", "--min-valid", "nan"],
    ["mail", "--min-valid", "inf"],
    ["mail", "--min-valid", "soon"],
    ["mail", "--min-valid"],
    ["mail", "-f", "json", "-f", "raw"],  # the last one wins
    ["mail", "--min-valid", "5", "--min-valid", "7"],
    ["--", "mail"],
    ["--", "-mail"],
    ["mail", "--"],
    ["--", "mail", "other"],
    ["mail", "other"],
    [],
    ["-"],
    ["mail", "--help"],
    ["mail", "-h"],
    ["mail", "-x"],
    ["mail", "--verbose"],
    ["mail", "--form", "json"],  # click does not complete option prefixes
    ["mail", "-f"],
    ["mail", "-f", "--min-valid"],
    ["work mail", "-f", "json"],
    ["", "-f", "json"],
    # the SASL formats and --user
    ["mail", "--format", "xoauth2"],
    ["mail", "-f", "OAUTHBEARER"],
    ["mail", "-foauthbearer", "--user", "a@b.example"],
    ["mail", "--format=xoauth2", "--user=a@b.example"],
    ["mail", "--user", "a@b.example"],  # accepted here; refused later (not a SASL format)
    ["--user", "a@b.example", "mail", "-f", "xoauth2"],
    ["mail", "--user", "-f"],  # click takes the next word as the value
    ["mail", "--user", "--", "-f", "xoauth2"],
    ["mail", "--user="],
    ["mail", "--user"],
    ["mail", "--user", "a", "--user", "b"],  # the last one wins
    ["mail", "-u", "a"],  # no short form
    ["mail", "--use", "a"],
    ["mail", "--user", "a,b=c@x", "-f", "oauthbearer"],
    ["mail", "-f", "xoauth2", "--user", "Alice@Example.test"],  # kept as given
]


@functools.cache
def typer_group() -> Any:
    """The click group Typer builds from the app (once: parsing does not change it)."""
    return typer.main.get_command(app)


def typer_parse(args: list[str]) -> tuple[str, contract.Format, float, str | None] | str:
    """What Typer's parser makes of `oauthtok token ARGS`: the parameters, or "refused"."""
    group = typer_group()
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            ctx = group.make_context("oauthtok", ["token", *args])
            name, command, rest = group.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
            sub = command.make_context(name, rest, parent=ctx)
    except Exception as exc:  # usage errors, and --help (which exits)
        if type(exc).__module__.startswith("typer."):
            return "refused"
        raise
    params = sub.params
    return params["name"], params["fmt"], params["min_valid"], params["user"]


@pytest.mark.parametrize("args", FORMS, ids=[" ".join(f) or "(none)" for f in FORMS])
def test_fast_parser_equals_typer(args: list[str]) -> None:
    fast = fastpath.parse_args(list(args))
    full = typer_parse(list(args))
    if full == "refused":
        assert fast is None, "the fast path accepts what the CLI refuses"
    else:
        assert fast is not None, "the fast path declines a valid form"
        assert fast.as_tuple() == full


def test_every_format_is_a_fast_format() -> None:
    for fmt in contract.Format:
        parsed = fastpath.parse_args(["x", "--format", fmt.value])
        assert parsed is not None and parsed.fmt is fmt


QUICK_FORMS = {
    "list": [[], ["--json"], ["--json", "--json"], ["x"], ["--json=1"], ["-j"], ["--", "x"]],
    "show": [["a"], ["a", "--json"], ["--json", "a"], [], ["a", "b"], ["--", "--json"],
             ["-"], ["a", "--jso"], ["a", "--help"]],
    "services": [[], ["--json"], ["--format", "json"], ["x"]],
    "show-help": [[], ["microsoft"], ["--", "-x"], ["a", "b"], ["-h"], ["--json"]],
}  # fmt: skip
QUICK_CASES = [(c, f) for c, forms in QUICK_FORMS.items() for f in forms]


def typer_parse_any(command: str, args: list[str]) -> dict[str, Any] | str:
    group = typer_group()
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            ctx = group.make_context("oauthtok", [command, *args])
            name, cmd, rest = group.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
            sub = cmd.make_context(name, rest, parent=ctx)
    except Exception as exc:
        if type(exc).__module__.startswith("typer."):
            return "refused"
        raise
    return dict(sub.params)


@pytest.mark.parametrize(("command", "args"), QUICK_CASES, ids=[f"{c} {f}" for c, f in QUICK_CASES])
def test_quick_parser_equals_typer(command: str, args: list[str]) -> None:
    fast = fastpath.parse_quick(command, list(args))
    full = typer_parse_any(command, list(args))
    if full == "refused":
        assert fast is None
        return
    assert fast is not None and isinstance(full, dict)
    positionals, flags = fast
    assert full.get("as_json", False) == ("--json" in flags)
    given = [v for k, v in full.items() if k in ("name", "service") and v is not None]
    assert positionals == given


def test_quick_commands_are_the_typer_commands_read_only_ones() -> None:
    group: Any = typer.main.get_command(app)
    assert set(fastpath.QUICK) <= set(group.commands)
