"""The CLI layer with Typer's CliRunner: rendering, prompts, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from oauthtok import __version__
from oauthtok.cli import output
from oauthtok.cli.app import app
from oauthtok.store import TokenStore
from tests.helpers import PROGRAM, make_record, make_secrets

runner = CliRunner()


@pytest.fixture
def store(keyring_env: dict[str, str]) -> TokenStore:
    return TokenStore()


@pytest.fixture
def interactive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend stdin is a terminal, so the CLI prompts."""
    monkeypatch.setattr(output, "can_prompt", lambda: True)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"oauthtok {__version__}\n"


def test_services_plain_and_json() -> None:
    result = runner.invoke(app, ["services"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "NAME\tTITLE\tFROM" and any(line.startswith("microsoft\t") for line in lines)
    assert "\x1b[" not in result.stdout  # no colour when piped
    data = json.loads(runner.invoke(app, ["services", "--json"]).stdout)
    assert {"name", "title", "origin", "scopes"} <= set(data[0])


def test_show_help() -> None:
    overview = runner.invoke(app, ["show-help"])
    assert overview.exit_code == 0 and "microsoft" in overview.stdout
    assert "oauthtok show-help SERVICE" in overview.stdout
    ms = runner.invoke(app, ["show-help", "microsoft"])
    assert ms.exit_code == 0
    assert "`http://localhost` (any port)" in ms.stdout
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in ms.stdout
    assert "`tenant` (default `common`)" in ms.stdout
    unknown = runner.invoke(app, ["show-help", "micrsoft"])
    assert unknown.exit_code == 2
    assert "unknown service 'micrsoft'" in unknown.stderr and "microsoft" in unknown.stderr


def test_empty_list(store: TokenStore) -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0 and result.stdout == ""
    assert "No tokens yet" in result.stderr
    assert json.loads(runner.invoke(app, ["list", "--json"]).stdout) == []


def test_list_and_show(store: TokenStore) -> None:
    store.add(make_record("work-mail"), make_secrets())
    store.add(make_record("old", expires_at=time.time() - 10), make_secrets())
    store.add(
        make_record("gone", expires_at=time.time() - 10, has_refresh_token=False), make_secrets()
    )
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert rows[0] == [
        "NAME", "SERVICE", "ACCOUNT", "SCOPES", "CLIENT ID", "EXPIRES IN", "LAPSES IN", "STATUS",
        "SECRET EXPIRES",
    ]  # fmt: skip
    status = {row[0]: row[7] for row in rows[1:]}
    assert status == {
        "gone": "needs-reauthorization",
        "old": "expired-will-refresh",
        "work-mail": "valid",
    }
    data = json.loads(runner.invoke(app, ["list", "--json"]).stdout)
    assert [d["name"] for d in data] == ["gone", "old", "work-mail"]
    assert data[2]["expires_in"] > 3500
    shown = runner.invoke(app, ["show", "WORK-MAIL"])
    assert shown.exit_code == 0 and "client id" in shown.stdout
    js = runner.invoke(app, ["show", "work-mail", "--json"]).stdout
    assert json.loads(js)["client_id"] == "11111111-2222"
    for text in (result.stdout, shown.stdout, js):
        assert "secret-" not in text and "AT-" not in text


def test_show_missing_is_3(store: TokenStore) -> None:
    result = runner.invoke(app, ["show", "nope"])
    assert result.exit_code == 3 and "no token named 'nope'" in result.stderr


def test_rename_and_delete(store: TokenStore) -> None:
    store.add(make_record("a"), make_secrets())
    store.add(make_record("b"), make_secrets())
    assert runner.invoke(app, ["rename", "a", "c"]).exit_code == 0
    assert runner.invoke(app, ["rename", "a", "d"]).exit_code == 3
    assert runner.invoke(app, ["rename", "c", "B"]).exit_code == 2
    assert runner.invoke(app, ["rename", "c", " bad"]).exit_code == 2
    assert runner.invoke(app, ["delete", "c", "--yes"]).exit_code == 0
    assert runner.invoke(app, ["delete", "c", "--yes"]).exit_code == 3
    assert [r.name for r in store.records()] == ["b"]


def test_delete_asks_on_a_terminal(store: TokenStore, interactive: None) -> None:
    store.add(make_record("a"), make_secrets())
    result = runner.invoke(app, ["delete", "a"], input="n\n")
    assert result.exit_code == 0 and "Not deleted" in result.stderr  # declining is no error
    assert [r.name for r in store.records()] == ["a"]
    assert runner.invoke(app, ["delete", "a"], input="y\n").exit_code == 0
    assert store.records() == []


def test_token_errors(store: TokenStore) -> None:
    assert runner.invoke(app, ["token", "nope"]).exit_code == 3
    store.add(make_record("a"), make_secrets())
    bad = runner.invoke(app, ["token", "a", "--format", "xml"])
    assert bad.exit_code == 2 and "--format" in bad.stderr
    ok = runner.invoke(app, ["token", "a", "--format", "header"])
    assert ok.stdout == "Authorization: Bearer AT-secret-access\n"


# -- create: prompts and refusals (the browser part is in test_e2e) -----------------------------


def create_args(*extra: str) -> list[str]:
    return ["create", "n", "--service", "microsoft", "--client-id", "cid", *extra]


def test_scope_numbers_belong_to_the_prompt(store: TokenStore) -> None:
    """`--scopes "1 3"` would ask for scopes named 1 and 3: refused, before any sign-in."""
    store.add(make_record("Work"), make_secrets())
    for args in (["--add-scope", "2"], ["--scopes", "1 3"]):
        result = runner.invoke(app, ["reauthorize", "work", *args])
        assert result.exit_code == 2, result.stderr
        assert "is a number, not a scope" in result.stderr and "show-help microsoft" in (
            result.stderr
        )
    assert store.get("work").scopes == make_record().scopes
    # only what is typed: a token with a scope stored as "1" (before this check existed) can
    # still be given another scope (and "1" removed)
    store.add(make_record("old", scopes=("offline_access", "1")), make_secrets())
    for change in (["--add-scope", "Mail.Send"], ["--remove-scope", "1"]):
        other = runner.invoke(
            app, ["reauthorize", "old", *change, "--client-certificate", "/nonexistent"]
        )
        assert other.exit_code == 2 and "cannot read the client certificate" in other.stderr
    # an added scope the catalog does not list is said, as create says it
    typo = runner.invoke(
        app, ["reauthorize", "old", "-a", "Mail.Raed", "--client-certificate", "/nonexistent"]
    )
    assert "warning: scope 'Mail.Raed' is not in the microsoft catalog" in typo.stderr
    from oauthtok.scopes import number_problem

    assert number_problem(None, ("3",)) is None  # a service without a catalog entry: any name


def test_create_refuses_taken_name_before_asking(store: TokenStore) -> None:
    store.add(make_record("Work"), make_secrets())
    result = runner.invoke(app, ["create", "work", "--service", "microsoft"])
    assert result.exit_code == 2 and "exists already" in result.stderr
    assert "Client secret" not in result.stderr


def test_a_taken_name_is_asked_again_on_a_terminal(store: TokenStore, interactive: None) -> None:
    store.add(make_record("Work"), make_secrets())
    result = runner.invoke(
        app, ["create", "work", "--service", "microsoft", "--client-id", "c"], input="other\n"
    )
    assert "exists already" in result.stderr and "Token name:" in result.stderr
    assert "Client secret" in result.stderr  # went on with the new name


def test_secret_mismatch_three_times_is_2(store: TokenStore, interactive: None) -> None:
    result = runner.invoke(
        app, create_args("--scopes", "offline_access"), input="a\nb\nc\nd\ne\nf\n"
    )
    assert result.exit_code == 2
    assert "did not match" in result.stderr and "2 left" in result.stderr
    for secret in "abcdef":
        assert f" {secret}\n" not in result.stderr  # hidden input is not echoed
    assert store.records() == []


def test_secret_is_never_taken_from_argv(store: TokenStore) -> None:
    result = runner.invoke(app, [*create_args(), "--client-secret", "x"])
    assert result.exit_code == 2  # no such option


def test_no_secret_without_a_terminal_is_2(store: TokenStore) -> None:
    result = runner.invoke(app, create_args("--scopes", "offline_access"))
    assert result.exit_code == 2 and "--client-secret-stdin" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "n", "--service", "nope", "--client-id", "c"], "unknown service 'nope'"),
        ([*create_args("--public", "--param", "tenant")], "--param takes KEY=VALUE"),
        ([*create_args("--public", "--param", "realm=x")], "no parameter 'realm'"),
        ([*create_args("--public", "--client-secret-stdin")], "do not go together"),
        (["create", "n", "--service", "microsoft"], "missing client id"),
        ([*create_args("--public", "--scopes", "offline_access 3")], "'3' is a number, not a"),
    ],
)
def test_create_usage_errors(store: TokenStore, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr


def test_ctrl_c_at_a_prompt_is_130(
    store: TokenStore, interactive: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: Any, **__: Any) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(typer, "prompt", interrupted)
    result = runner.invoke(app, ["create", "n", "--service", "microsoft"])
    assert result.exit_code == 130 and "cancelled" in result.stderr
    assert "nothing was saved" not in result.stderr  # nothing could have been, yet
    assert store.records() == []


def test_interactive_create_end_to_end(
    store: TokenStore,
    interactive: None,
    auth_server: Any,
    test_catalog: Path,
    browser: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every form field from prompts: name, service, client id, secret twice, scopes."""
    import webbrowser

    script = str(browser.parent / "browser")
    monkeypatch.setattr(
        webbrowser, "open", lambda url: subprocess.run([script, url], check=False) and True
    )
    auth_server.add_client("cid", "pw", "client_secret_basic")
    answers = "my token\ntestidp\ncid\npw\nwrong\npw\npw\n1 mail.sned\ny\ny\n"
    result = runner.invoke(app, ["create", "--timeout", "20"], input=answers)
    assert result.exit_code == 0, result.stderr
    assert "entries do not match" in result.stderr
    assert "scope 'mail.sned' is not in the testidp catalog (closest: mail.send)" in result.stderr
    assert "without 'offline_access' the token will not refresh" in result.stderr
    record = store.get("my token")
    assert record.scopes == ("offline_access", "mail.read", "mail.sned")
    assert store.read_tokens(record).client_secret == "pw"


def test_core_never_imports_typer_or_rich() -> None:
    code = (
        "import sys, oauthtok.manager, oauthtok.store, oauthtok.catalog, oauthtok.oauth,"
        " oauthtok.loopback, oauthtok.secretstore, oauthtok.launcher, oauthtok.fastpath,"
        " oauthtok.handout, oauthtok.scopes, oauthtok.freedesktop, oauthtok.account,"
        " oauthtok.grants, oauthtok.stores, oauthtok.alerts, oauthtok.keepalive, oauthtok.health,"
        " oauthtok.deviceauth, oauthtok.moving;"
        "print(sorted(m for m in ('typer','rich','click','httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_suggested_commands_quote_names_for_the_shell(store: TokenStore) -> None:
    store.add(make_record("my mail", expires_at=time.time() - 10, has_refresh_token=False),
              make_secrets(refresh_token=None, expires_at=time.time() - 10))  # fmt: skip
    result = runner.invoke(app, ["token", "my mail"])
    assert result.exit_code == 4
    assert "`oauthtok reauthorize 'my mail'`" in result.stderr


def test_unknown_flow_is_refused_before_anything(store: TokenStore, interactive: None) -> None:
    result = runner.invoke(app, ["create", "n", "--service", "microsoft", "--flow", "magic"])
    assert result.exit_code == 2 and "Invalid value for '--flow'" in result.stderr
    assert "Client" not in result.stderr


def test_ctrl_c_while_parsing_is_130(monkeypatch: pytest.MonkeyPatch) -> None:
    from oauthtok import contract

    def interrupted(text: str) -> float:
        raise KeyboardInterrupt

    monkeypatch.setattr(contract, "parse_min_valid", interrupted)
    result = runner.invoke(app, ["token", "x", "--min-valid", "5"])
    assert result.exit_code == 130 and result.stderr.strip() == "oauthtok: cancelled"


@pytest.mark.parametrize("buffered", [False, True], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize(
    "args",
    [["services"], ["services", "--json"], ["--help"], ["token", "-h"], ["--version"],
     ["schedule", "--help"]],
)  # fmt: skip
def test_a_closed_pipe_ends_quietly(args: list[str], buffered: bool) -> None:
    """Unbuffered (PYTHONUNBUFFERED=1) the write fails; buffered, the last flush does."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -0`: nobody reads
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "oauthtok", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            env=env,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")


@pytest.mark.parametrize(
    ("args", "closed", "code"),
    [
        (["delete", "nope"], ">&-", 3),
        (["delete", "nope"], "2>&-", 3),
        (["--version"], ">&-", 0),
        (["list"], ">&-", 0),
        (["schedule", "--help"], ">&-", 0),
    ],
)
def test_an_output_closed_from_the_start_keeps_the_status(
    args: list[str], closed: str, code: int
) -> None:
    """`cmd >&-` (cron lines, services): the output goes nowhere, the exit status stays."""
    result = subprocess.run(
        ["sh", "-c", f'exec "$0" "$@" {closed}', *PROGRAM, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_a_full_disk_at_the_last_flush_is_one_line() -> None:
    """Buffered output that cannot be written when the process ends: one line, not the
    interpreter's "Exception ignored" report."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*PROGRAM, "--version"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=30,
            env=env,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == "oauthtok: error: cannot write the output (No space left on device)\n"


@pytest.mark.parametrize(
    ("args", "fast", "buffered"),
    [
        (["services"], True, True),
        (["services"], True, False),
        (["services"], False, True),
        (["services"], False, False),
        (["show-help", "microsoft"], True, False),
        (["--help"], False, False),
        (["schedule", "--help"], False, True),
    ],
)
def test_a_full_disk_while_writing_is_one_line_not_a_bug(
    args: list[str], fast: bool, buffered: bool
) -> None:
    """Output that cannot be written while the command writes it (a full disk, a quota): one
    line that says so, exit 1; not "internal error ... this is a bug"."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    if not fast:
        env["OAUTHTOK_NO_FAST_PATH"] = "1"
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*PROGRAM, *args], stdout=full, stderr=subprocess.PIPE, text=True, timeout=30,
            env=env,
        )  # fmt: skip
    assert (result.returncode, result.stderr) == (
        1, "oauthtok: error: cannot write the output (No space left on device)\n"
    )  # fmt: skip


def test_ctrl_c_while_typer_loads_is_the_cancelled_line() -> None:
    """Before the app's own boundary exists (Typer still importing), Ctrl-C is still one line."""
    code = (
        "import sys, oauthtok.cli\n"
        "def loading():\n"
        "    raise KeyboardInterrupt\n"
        "oauthtok.cli.main = loading\n"
        "sys.argv = ['oauthtok', 'status']\n"
        "from oauthtok.launcher import main\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stderr.strip()) == (130, "oauthtok: cancelled")


def test_a_status_beyond_255_is_the_interpreters() -> None:
    """`exec` passes a child's status on; Windows' can exceed what `os._exit` takes."""
    code = "from oauthtok.launcher import _leave; _leave(SystemExit(3221225477))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (3221225477 & 0xFF, "")


def test_every_command_and_option_has_help() -> None:
    import typer.main
    from typer.core import TyperGroup

    seen: list[str] = []

    def walk(command: Any, path: str) -> list[str]:
        # Typer 0.28's commands are its vendored Click's, not `click`'s: test by Typer's classes
        seen.append(path)
        missing = [] if command.help or command.hidden else [path]
        for param in command.params:
            if param.param_type_name == "option" and not param.help and param.name != "help":
                missing.append(f"{path} {param.opts[0]}")
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                missing += walk(sub, f"{path} {name}")
        return missing

    assert walk(typer.main.get_command(app), "oauthtok") == []
    assert {"oauthtok create", "oauthtok schedule install"} <= set(seen)  # it walked them all
    for args in (["status"], ["schedule", "install"], ["migrate"], ["export"], ["import"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Usage: oauthtok " + " ".join(args) in result.stdout


@pytest.mark.parametrize("width", [50, 60, 80, 200])
def test_help_lists_the_commands_as_typer_would_without_building_any(width: int) -> None:
    """`--help` reads each command's summary instead of building it (the build is most of the
    cost of `--help`): the listing must be Typer's own, hidden commands left out."""
    import typer.main
    from typer.core import TyperGroup

    from oauthtok.cli.app import LazyCommands

    group: Any = typer.main.get_command(app)
    ctx = group.make_context("oauthtok", ["list"])
    formatter_cls = type(ctx.make_formatter())
    fast, full = formatter_cls(width=width), formatter_cls(width=width)
    group.format_commands(ctx, fast)
    assert isinstance(group.commands, LazyCommands) and group.commands._built == {}
    TyperGroup.format_commands(group, ctx, full)  # Typer's: builds every command
    assert len(group.commands._built) == len(group.commands) >= 19
    assert fast.getvalue() == full.getvalue()
    assert "create " in fast.getvalue() and "device-wait" not in fast.getvalue()


#: the real program with an exit handler and an object only the interpreter's teardown deletes
TEARDOWN_PROBE = """
import atexit, sys
atexit.register(lambda: print("exit handler ran", file=sys.stderr))
class Teardown:
    def __del__(self):
        print("teardown ran", file=sys.stderr)
keep = Teardown()
sys.argv = ["oauthtok", *sys.argv[1:]]
from oauthtok.launcher import main
sys.exit(main())
"""


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["schedule", "--help"], 0, "Usage: oauthtok schedule"),
        (["token", "x", "--bogus"], 2, "No such option: --bogus"),
        (["delete", "nope"], 3, "no token named 'nope'"),
    ],
)
def test_a_full_command_ends_without_the_interpreters_teardown(
    args: list[str], code: int, says: str
) -> None:
    """After a command of the full program, the launcher ends the process itself: exit
    handlers run, all output arrives, the exit code is the command's, and the teardown of
    every module Typer and httpx imported (~50 ms of CPU) is skipped."""
    result = subprocess.run(
        [sys.executable, "-c", TEARDOWN_PROBE, *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == code, result.stderr
    assert says in result.stdout + result.stderr
    assert "exit handler ran" in result.stderr
    assert "teardown ran" not in result.stderr


def test_a_thread_still_running_is_waited_for_as_the_interpreter_would() -> None:
    """The launcher leaves the exit to the interpreter when it would wait for a thread (one
    started as the command ends, so that it is surely still running then)."""
    code = (
        "import sys, threading, time\n"
        "import oauthtok.cli\n"
        "command = oauthtok.cli.main\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    print('thread finished', flush=True)\n"
        "def command_then_a_thread():\n"
        "    try:\n"
        "        command()\n"
        "    finally:\n"
        "        threading.Thread(target=late).start()\n"
        "oauthtok.cli.main = command_then_a_thread\n"
        "sys.argv = ['oauthtok', 'schedule', '--help']\n"
        "from oauthtok.launcher import main\n"
        "sys.exit(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: oauthtok schedule" in result.stdout
    assert result.stdout.rstrip().endswith("thread finished")


@pytest.mark.parametrize(("args", "code"), [([], 2), (["--help"], 0), (["-h"], 0)])
def test_the_overview_is_printed_whole_by_the_real_program(args: list[str], code: int) -> None:
    """The launcher skips the interpreter's shutdown after the overview (~15 ms of `--help`):
    what Typer printed must still all arrive, with Typer's exit code."""
    result = subprocess.run(
        [sys.executable, "-m", "oauthtok", *args], capture_output=True, text=True, timeout=30
    )
    out = result.stdout if code == 0 else result.stdout + result.stderr
    assert result.returncode == code
    assert out.startswith("Usage: ") and "Commands:" in out
    assert out.splitlines()[-1].split()[0] == "schedule"  # the last command: nothing cut off
