"""The command line: parse, prompt, render. Everything else is in the core.

Data goes to stdout, messages to stderr. Tables and colour only on a terminal (rich honours
NO_COLOR); plain text when piped. Every OauthtokError becomes one line on stderr and its exit
code; Ctrl-C exits 130 having saved nothing; no traceback unless OAUTHTOK_DEBUG is set.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from oauthtok import __version__
from oauthtok.errors import Cancelled, OauthtokError, UsageError, command
from oauthtok.fastpath import FORMATS, render_token
from oauthtok.models import Service, TokenRecord
from oauthtok.oauth import DeviceAuthorization
from oauthtok.services import closest_scope, get_service, load_catalog, parse_params
from oauthtok.tokens import DEFAULT_AUTH_TIMEOUT, DEFAULT_MIN_VALID, FLOWS, NewToken, Oauthtok

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="oauthtok",
    help="Create, store, refresh and hand out OAuth2 access tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)

MAX_SECRET_TRIES = 3


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def stdout() -> Console:
    return Console(highlight=False)


def is_tty() -> bool:
    return sys.stdout.isatty()


def can_prompt() -> bool:
    return sys.stdin.isatty()


def say(message: str) -> None:
    """A message for the person (stderr), plain text."""
    print(message, file=sys.stderr)


def fail(exc: OauthtokError) -> typer.Exit:
    say(f"oauthtok: error: {exc}")
    return typer.Exit(exc.exit_code)


def handle_errors(fn: F) -> F:
    """Map the core's errors, Ctrl-C and unexpected bugs to one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OauthtokError as exc:
            raise fail(exc) from None
        except (KeyboardInterrupt, typer.Abort):  # Ctrl-C, or end of input at a prompt
            raise fail(Cancelled()) from None
        except typer.Exit:
            raise
        except Exception as exc:
            if os.environ.get("OAUTHTOK_DEBUG"):
                raise
            say(
                f"oauthtok: internal error ({type(exc).__name__}); this is a bug, please report "
                "it (OAUTHTOK_DEBUG=1 shows the traceback, which may contain secrets)"
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def version_callback(value: bool) -> None:
    if value:
        print(f"oauthtok {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    """Create, store, refresh and hand out OAuth2 access tokens."""


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def humanize_seconds(seconds: float) -> str:
    seconds = int(seconds)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{sign}{seconds}s"
    if seconds < 7200:
        return f"{sign}{seconds // 60}m"
    if seconds < 172800:
        return f"{sign}{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{sign}{seconds // 86400}d"


def expires_in(record: TokenRecord, now: float) -> str:
    if record.expires_at is None:
        return "never"
    left = record.expires_at - now
    return humanize_seconds(left) if left > 0 else "expired"


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal, tab-separated lines (with a header) when piped."""
    if is_tty():
        table = Table(*columns, show_edge=False, pad_edge=False)
        for row in rows:
            table.add_row(*(escape(c) for c in row))
        stdout().print(table)
    else:
        print("\t".join(columns))
        for row in rows:
            print("\t".join(row))


# ---------------------------------------------------------------------------------------------
# the catalog


@app.command("services")
@handle_errors
def services_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the authorization services of the catalog."""
    catalog = load_catalog()
    if as_json:
        emit_json([service_json(s) for s in catalog.values()])
        return
    print_table(["NAME", "TITLE", "FROM"], [[s.name, s.title, s.origin] for s in catalog.values()])


def service_json(service: Service) -> dict[str, Any]:
    return {
        "name": service.name,
        "title": service.title,
        "origin": service.origin,
        "redirect_uri": service.redirect_uri,
        "params": service.params,
        "refresh_scope": service.refresh_scope,
        "token_auth": service.token_auth,
        "default_scopes": list(service.default_scopes),
        "scopes": service.scopes,
    }


@app.command("show-help")
@handle_errors
def show_help_command(
    service: Annotated[
        str | None, typer.Argument(help="A service from `oauthtok services`.")
    ] = None,
) -> None:
    """How to register an app with a service (without SERVICE: how to choose one)."""
    catalog = load_catalog()
    if service is None:
        from oauthtok import paths

        lines = ["Services (pick the one that issued your app's client id):", ""]
        width = max((len(n) for n in catalog), default=0)
        lines += [f"  {s.name.ljust(width)}  {s.title}" for s in catalog.values()]
        lines += [
            "",
            "`oauthtok show-help SERVICE` walks you through registering an app with it;",
            "then `oauthtok create NAME --service SERVICE`.",
            f"Add or override services in {paths.user_catalog_path()} or in files named by",
            "OAUTHTOK_SERVICES (see README, 'Service catalog').",
        ]
        print("\n".join(lines))
        return
    entry = get_service(service, catalog)
    parts = [entry.help.strip() or f"# {entry.title}", "", "## Scopes", ""]
    parts += [f"- `{scope}` — {desc}" for scope, desc in entry.scopes.items()]
    if entry.refresh_scope:
        parts += ["", f"Include `{entry.refresh_scope}`, or the token will not refresh."]
    from urllib.parse import urlsplit

    port_note = "" if urlsplit(entry.redirect_uri).port else " (any port)"
    parts += ["", "## Redirect URI to register", "", f"`{entry.redirect_uri}`{port_note}"]
    if entry.params:
        parts += ["", "## Parameters (`--param KEY=VALUE`)", ""]
        parts += [f"- `{k}` (default `{v or 'required'}`)" for k, v in entry.params.items()]
    text = "\n".join(parts) + "\n"
    if is_tty():
        from rich.markdown import Markdown

        stdout().print(Markdown(text))
    else:
        print(text, end="")


# ---------------------------------------------------------------------------------------------
# inspecting and managing stored tokens


def record_json(record: TokenRecord, now: float) -> dict[str, Any]:
    data = record.to_json()
    data["status"] = record.status(now)
    data["expires_in"] = None if record.expires_at is None else int(record.expires_at - now)
    return data


@app.command("list")
@handle_errors
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List stored tokens (reads the index only, never the keyring)."""
    records = Oauthtok().store.records()
    now = time.time()
    if as_json:
        emit_json([record_json(r, now) for r in records])
        return
    if not records:
        say("No tokens yet. Create one with `oauthtok create NAME --service SERVICE`.")
        return
    print_table(
        ["NAME", "SERVICE", "SCOPES", "CLIENT ID", "EXPIRES IN", "STATUS"],
        [
            [
                r.name,
                r.service,
                " ".join(r.granted_scopes or r.scopes),
                r.client_id,
                expires_in(r, now),
                r.status(now),
            ]
            for r in records
        ],
    )


@app.command("show")
@handle_errors
def show_command(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Everything about one token except its secrets."""
    record = Oauthtok().store.get(name)
    now = time.time()
    data = record_json(record, now)
    if as_json:
        emit_json(data)
        return

    def when(ts: float | None) -> str:
        return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))

    rows = [
        ("name", record.name),
        ("service", record.service),
        ("status", data["status"]),
        ("client id", record.client_id),
        ("client type", "public" if record.token_auth == "none" else record.token_auth),
        ("signed in with", record.flow),
        ("scopes asked", " ".join(record.scopes)),
        ("scopes granted", " ".join(record.granted_scopes or ()) or "(not reported)"),
        ("params", " ".join(f"{k}={v}" for k, v in record.params.items()) or "-"),
        ("token endpoint", record.endpoints.token_url),
        ("authorize endpoint", record.endpoints.authorize_url or "-"),
        ("redirect uri", record.redirect_uri),
        ("refresh token", "yes" if record.has_refresh_token else "no"),
        ("created", when(record.created_at)),
        ("refreshed", when(record.refreshed_at)),
        ("expires", f"{when(record.expires_at)} ({expires_in(record, now)})"),
        ("id", record.id),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))


@app.command("rename")
@handle_errors
def rename_command(
    old: Annotated[str, typer.Argument(help="The current name.")],
    new: Annotated[str, typer.Argument(help="The new name.")],
) -> None:
    """Rename a token (the keyring is not touched)."""
    record = Oauthtok().store.rename(old, new)
    say(f"Renamed {old!r} to {record.name!r}.")


@app.command("delete")
@handle_errors
def delete_command(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    no_revoke: Annotated[
        bool, typer.Option("--no-revoke", help="Do not revoke the grant at the provider.")
    ] = False,
) -> None:
    """Delete a token: revoke it at the provider (when it can), then delete it here."""
    tool = Oauthtok()
    record = tool.store.get(name)
    question = f"Delete token {record.name!r} ({record.service})?"
    if not yes and can_prompt() and not typer.confirm(question, default=False, err=True):
        raise Cancelled("not deleted")
    outcome = tool.delete(record.name, revoke=not no_revoke)
    if outcome.warning:
        say(f"warning: {outcome.warning}")
    revoked = " and revoked it at the provider" if outcome.revoked else ""
    say(f"Deleted {record.name!r}{revoked}.")


# ---------------------------------------------------------------------------------------------
# signing in


def read_client_secret(from_stdin: bool) -> str | None:
    """The secret from stdin (one line), OAUTHTOK_CLIENT_SECRET, or None (ask)."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UsageError("--client-secret-stdin: stdin gave no secret")
        return line
    return os.environ.get("OAUTHTOK_CLIENT_SECRET") or None


def prompt_secret() -> str:
    """Hidden, asked twice, must match; three misses → exit 2."""
    if not can_prompt():
        raise UsageError(
            "no client secret: pipe it with --client-secret-stdin, set OAUTHTOK_CLIENT_SECRET, "
            "or use --public for a public client"
        )
    for attempt in range(1, MAX_SECRET_TRIES + 1):
        first = typer.prompt("Client secret", hide_input=True, err=True)
        second = typer.prompt("Client secret (again)", hide_input=True, err=True)
        if first == second and first.strip():
            return first
        left = MAX_SECRET_TRIES - attempt
        reason = "is empty" if first == second else "entries do not match"
        if left:
            say(f"The secret {reason}; try again ({left} left).")
    raise UsageError("the client secrets did not match; nothing was saved")


def ask(label: str) -> str:
    if not can_prompt():
        raise UsageError(f"missing {label} (no terminal to ask on)")
    return str(typer.prompt(label.capitalize(), err=True)).strip()


def choose_service() -> Service:
    catalog = load_catalog()
    if not can_prompt():
        raise UsageError(f"missing --service (one of: {', '.join(catalog)})")
    names = list(catalog)
    for i, (name, service) in enumerate(catalog.items(), 1):
        say(f"  {i:>2}. {name:<12} {service.title}")
    while True:
        choice = str(typer.prompt("Service (name or number)", err=True)).strip()
        if choice.isdigit() and 1 <= int(choice) <= len(names):
            return catalog[names[int(choice) - 1]]
        if choice in catalog:
            return catalog[choice]
        say(f"No service {choice!r}; choose one of: {', '.join(names)}")


def choose_scopes(service: Service) -> tuple[str, ...]:
    if not can_prompt():
        if service.default_scopes:
            return service.default_scopes
        raise UsageError("missing --scopes (no terminal to ask on)")
    names = list(service.scopes)
    table = Table("#", "SCOPE", "WHAT IT ALLOWS", show_edge=False, pad_edge=False)
    for i, scope in enumerate(names, 1):
        table.add_row(str(i), escape(scope), escape(service.scopes[scope]))
    stderr().print(table)
    answer = typer.prompt(
        "Scopes (numbers or names, separated by spaces)",
        default=" ".join(service.default_scopes) or None,
        err=True,
    )
    chosen: list[str] = []
    for item in str(answer).split():
        if item.isdigit() and 1 <= int(item) <= len(names):
            chosen.append(names[int(item) - 1])
        else:
            chosen.append(item)
    return tuple(dict.fromkeys(chosen))


def check_scopes(
    service: Service, scopes: tuple[str, ...], app_only: bool = False
) -> tuple[str, ...]:
    """Warn about scopes not in the catalog; offer the refresh scope when it is missing."""
    if not scopes:
        raise UsageError(f"no scopes given; `oauthtok show-help {service.name}` lists them")
    for scope in scopes:
        if service.scopes and scope not in service.scopes:
            near = closest_scope(service, scope)
            hint = f" (closest: {near})" if near else ""
            where = f"the {service.name} catalog"
            say(f"warning: scope {scope!r} is not in {where}{hint}; asking for it")
    refresh = service.refresh_scope
    if refresh and refresh not in scopes and not app_only:
        say(f"warning: without {refresh!r} the token will not refresh and stops working at expiry")
        if can_prompt() and typer.confirm(f"Add {refresh!r}?", default=True, err=True):
            scopes = (refresh, *scopes)
    return scopes


def browser_available() -> bool:
    """False where a browser cannot be opened: an SSH session, or no display on Linux."""
    if os.environ.get("BROWSER"):
        return True
    if os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"):
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class ConsoleSignIn:
    """The sign-in as a person sees it: URL or code on stderr, browser, spinner, paste."""

    def __init__(self, open_browser: bool) -> None:
        self.open_browser = open_browser
        self._status: Any = None

    def authorization_url(self, url: str, paste: Callable[[str], bool] | None) -> None:
        say("Open this URL in a browser to sign in:")
        say(f"  {url}")
        if paste is not None:
            from urllib.parse import parse_qs, urlsplit

            redirect = parse_qs(urlsplit(url).query).get("redirect_uri", ["the loopback"])[0]
            say(
                f"After you approve, the browser goes to {redirect}… which may fail to load: "
                "copy that whole address from the address bar, paste it here and press Enter. "
                "(oauthtok listens there too: an SSH port forward to it works as well.)"
            )
            threading.Thread(target=self._read_pastes, args=(paste,), daemon=True).start()
            return
        if self.open_browser:
            import webbrowser

            # a browser command may wait for the window: never block the listener on it
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        self._spin("Waiting for the browser (Ctrl-C to cancel)…")

    def _read_pastes(self, paste: Callable[[str], bool]) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            if paste(line):
                return
            say("That is not the answer to this sign-in (wrong or missing state); paste the "
                "whole address of the page the browser was sent to.")  # fmt: skip

    def device_code(self, device: DeviceAuthorization) -> None:
        say(f"To sign in, open {device.verification_uri} on any device and enter the code:")
        say(f"  {device.user_code}")
        if device.verification_uri_complete:
            say(f"(or open {device.verification_uri_complete})")
        self._spin("Waiting for approval (Ctrl-C to cancel)…")

    def notice(self, message: str) -> None:
        say(message)

    def _spin(self, text: str) -> None:
        if sys.stderr.isatty():
            self._status = stderr().status(text)
            self._status.start()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def check_flow(flow: str) -> None:
    if flow not in FLOWS:
        raise UsageError(f"--flow must be one of {', '.join(FLOWS)}, not {flow!r}")


FLOW_HELP = "browser | paste | device | client-credentials (default: browser, or a fallback)"


@app.command("create")
@handle_errors
def create_command(
    name: Annotated[str | None, typer.Argument(help="Friendly name scripts will use.")] = None,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Catalog service.")] = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="The app's client id.")
    ] = None,
    scopes: Annotated[
        str | None, typer.Option("--scopes", help="Space-separated scopes to ask for.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="KEY=VALUE for the service, repeatable.")
    ] = None,
    client_secret_stdin: Annotated[
        bool, typer.Option("--client-secret-stdin", help="Read the client secret from stdin.")
    ] = False,
    public: Annotated[
        bool, typer.Option("--public", help="Public client: no secret, PKCE only.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the browser.")
    ] = DEFAULT_AUTH_TIMEOUT,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the URL; do not open a browser.")
    ] = False,
    flow: Annotated[str, typer.Option("--flow", help=FLOW_HELP)] = "browser",
) -> None:
    """Sign in with a service and store the tokens under NAME."""
    check_flow(flow)
    tool = Oauthtok()
    if public and client_secret_stdin:
        raise UsageError("--public and --client-secret-stdin do not go together")
    name = name if name is not None else ask("token name")
    tool.check_new_name(name)
    entry = get_service(service, load_catalog()) if service else choose_service()
    params = parse_params(param or [])
    client_id = client_id if client_id is not None else ask("client id")
    secret = None
    if not public:
        secret = read_client_secret(client_secret_stdin) or prompt_secret()
    chosen = tuple(scopes.split()) if scopes is not None else choose_scopes(entry)
    chosen = check_scopes(entry, chosen, app_only=flow == "client-credentials")
    ui = ConsoleSignIn(open_browser=not no_browser)
    new = NewToken(name, entry, client_id, secret, chosen, params, public=public, flow=flow)
    try:
        record = tool.create(new, ui, timeout=timeout, browser_available=browser_available())
    finally:
        ui.stop()
    say(f"Saved token {record.name!r} ({describe_validity(record)}).")
    granted = set(record.granted_scopes or record.scopes)
    missing = [s for s in record.scopes if s not in granted]
    if record.granted_scopes is not None and missing:
        say(f"warning: the provider did not grant: {' '.join(missing)}")
    say(f"Use it with: {command('token', record.name)}")


def describe_validity(record: TokenRecord) -> str:
    if record.expires_at is None:
        return "does not expire"
    left = humanize_seconds(record.expires_at - time.time())
    refresh = "refreshes by itself" if record.has_refresh_token else "no refresh token"
    return f"valid for {left}, {refresh}"


@app.command("reauthorize")
@handle_errors
def reauthorize_command(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    client_secret_stdin: Annotated[
        bool, typer.Option("--client-secret-stdin", help="A new client secret from stdin.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the browser.")
    ] = DEFAULT_AUTH_TIMEOUT,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the URL; do not open a browser.")
    ] = False,
    flow: Annotated[
        str | None, typer.Option("--flow", help=FLOW_HELP + "; default: as created")
    ] = None,
) -> None:
    """Consent again (same service, client and scopes); old tokens stay until it succeeds."""
    if flow is not None:
        check_flow(flow)
    tool = Oauthtok()
    secret = read_client_secret(client_secret_stdin)
    ui = ConsoleSignIn(open_browser=not no_browser)
    try:
        record = tool.reauthorize(
            name, ui, timeout=timeout, client_secret=secret, flow=flow,
            browser_available=browser_available(),
        )  # fmt: skip
    finally:
        ui.stop()
    say(f"Reauthorized {record.name!r} ({describe_validity(record)}).")


# ---------------------------------------------------------------------------------------------
# handing out and refreshing


@app.command("token")
@handle_errors
def token_command(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="raw | header | json", case_sensitive=False)
    ] = "raw",
    min_valid: Annotated[
        float, typer.Option("--min-valid", min=0, help="Refresh first if it expires sooner.")
    ] = DEFAULT_MIN_VALID,
) -> None:
    """Print a valid access token (refreshing it first when needed)."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
    outcome = Oauthtok().valid_token(name, min_valid=min_valid)
    record, tokens = outcome.record, outcome.tokens
    scopes = record.granted_scopes or record.scopes
    print(render_token(tokens.access_token, tokens.token_type, tokens.expires_at, scopes, fmt))


@app.command("refresh")
@handle_errors
def refresh_command(
    names: Annotated[list[str] | None, typer.Argument(help="Token names.")] = None,
    all_tokens: Annotated[bool, typer.Option("--all", help="Every stored token.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Refresh even if still valid.")] = False,
    min_valid: Annotated[
        float, typer.Option("--min-valid", min=0, help="Refresh if it expires sooner.")
    ] = DEFAULT_MIN_VALID,
) -> None:
    """Refresh tokens now (one summary line each)."""
    tool = Oauthtok()
    if all_tokens == bool(names):
        raise UsageError("name the tokens to refresh, or give --all (not both)")
    records = tool.store.records() if all_tokens else [tool.store.get(n) for n in names or []]
    first_error: OauthtokError | None = None
    for record in records:
        if record.expires_at is None and not record.has_refresh_token:
            print(f"{record.name}: does not expire and has no refresh token; nothing to do")
            continue
        try:
            outcome = tool.refresh(record, force=force, min_valid=min_valid)
        except OauthtokError as exc:
            say(f"{record.name}: error: {exc}")
            first_error = first_error or exc
            continue
        verb = "refreshed" if outcome.refreshed else "still valid (use --force to refresh)"
        print(f"{outcome.record.name}: {verb}, {describe_validity(outcome.record)}")
    if first_error is not None:
        raise typer.Exit(first_error.exit_code)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # outside a command (while parsing)
        say(f"oauthtok: {Cancelled()}")
        sys.exit(130)
