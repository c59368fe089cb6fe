"""`create` and `reauthorize`: the sign-in as a person sees it.

The interactive `create` never throws away what was typed: a taken name, an unknown service or
an out-of-range scope number is asked again; required service parameters are asked right after
the service; an empty client secret means a public client. The secret store is checked before
anything is asked, so a consent is never given for tokens that could not be kept.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from oauthtok.cli import output
from oauthtok.cli.app import commands
from oauthtok.cli.options import (
    ClientCertificate,
    FlowOption,
    Name,
    NewSecretStdin,
    NoBrowser,
    Params,
    Scopes,
    SecretExpires,
    SecretStdin,
    ServiceName,
    Timeout,
)
from oauthtok.cli.output import console, describe_validity, say
from oauthtok.errors import Cancelled, UsageError, command
from oauthtok.kinds import DEFAULT_AUTH_TIMEOUT, Flow, TokenAuth

if TYPE_CHECKING:
    from oauthtok.catalog import Service
    from oauthtok.client_cert import ClientCertificate as ClientCertificateData
    from oauthtok.manager import TokenManager
    from oauthtok.oauth import DeviceAuthorization

MAX_SECRET_TRIES = 3


def terminal_text(value: object, cap: int | None = 300) -> str:
    """`sanitize.terminal_text`, imported when first needed (not for `--help`)."""
    from oauthtok.sanitize import terminal_text as clean

    return clean(value, cap)


SECRET_ENV = "OAUTHTOK_CLIENT_SECRET"


# -- asking ------------------------------------------------------------------------------------


def ask(label: str, default: str | None = None) -> str:
    if not output.can_prompt():
        raise UsageError(f"missing {label} (no terminal to ask on)")
    while True:
        answer = str(typer.prompt(label[:1].upper() + label[1:], default=default, err=True))
        if answer.strip():
            return answer.strip()


def read_client_secret(from_stdin: bool) -> str | None:
    """The secret from stdin (one line; at a terminal, the hidden prompt) or
    OAUTHTOK_CLIENT_SECRET, else None (ask).

    The variable is removed from the environment once read: the browser and any other child
    never inherit it.
    """
    from_env = os.environ.pop(SECRET_ENV, None)
    if from_stdin:
        if output.can_prompt():  # typed at a terminal, not piped: hidden, and asked twice
            return prompt_secret(allow_public=False)
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UsageError("--client-secret-stdin: stdin gave no secret")
        return line
    return from_env or None


def prompt_secret(allow_public: bool) -> str | None:
    """Hidden, asked twice, must match; three misses → exit 2. With `allow_public`, an empty
    first answer means a public client (None)."""
    if not output.can_prompt():
        raise UsageError(
            f"no client secret: pipe it with --client-secret-stdin, set {SECRET_ENV}, "
            "or use --public for a public client"
        )
    label = "Client secret (hidden" + ("; empty for a public client)" if allow_public else ")")
    for attempt in range(1, MAX_SECRET_TRIES + 1):
        first = typer.prompt(label, hide_input=True, err=True, default="", show_default=False)
        if not first.strip() and allow_public:
            say("No client secret: signing in as a public client (PKCE only).")
            return None
        if not first.strip():
            say("The secret is empty; this flow needs one.")
            continue
        second = typer.prompt("Client secret (again)", hide_input=True, err=True)
        if first == second:
            return str(first)
        left = MAX_SECRET_TRIES - attempt
        if left:
            say(f"The entries do not match; try again ({left} left).")
    raise UsageError("the client secrets did not match; nothing was saved")


def choose_name(manager: TokenManager, given: str | None) -> str:
    """The name, asked again on a terminal while it is invalid or taken."""
    name = given if given is not None else ask("token name")
    while True:
        try:
            manager.check_new_name(name)
            return name
        except UsageError as exc:
            if not output.can_prompt():
                raise
            say(f"{exc}.")
            name = ask("token name")


def choose_service() -> Service:
    from oauthtok.catalog import closest_service, load_catalog

    catalog = load_catalog()
    if not output.can_prompt():
        raise UsageError(f"missing --service (one of: {', '.join(catalog)})")
    from rich.markup import escape
    from rich.table import Table

    names = list(catalog)
    table = Table("#", "SERVICE", "WHAT IT IS", show_edge=False, pad_edge=False)
    table.columns[1].no_wrap = True
    table.columns[2].overflow = "fold"
    for i, (name, service) in enumerate(catalog.items(), 1):
        table.add_row(str(i), escape(name), escape(terminal_text(service.title)))
    console(stderr=True).print(table)
    while True:
        choice = ask("service (name or number)")
        if choice.isdigit() and 1 <= int(choice) <= len(names):
            return catalog[names[int(choice) - 1]]
        close = closest_service(choice, catalog)
        if close is not None and close.casefold() == choice.casefold():
            return catalog[close]
        hint = f"did you mean {close!r}? " if close else ""
        say(f"No service {choice!r}; {hint}choose a name or a number from the list.")


def read_credential_options(
    certificate_file: str | None, secret_expires: str | None
) -> tuple[ClientCertificateData | None, int | None]:
    """`--client-certificate FILE` (0600, key and certificate) and `--secret-expires DATE`,
    checked before anything is asked or opened."""
    from oauthtok import client_cert
    from oauthtok.kit import parse_expiry_date

    certificate = None if certificate_file is None else client_cert.load_file(certificate_file)
    if certificate is not None and secret_expires is not None:
        raise UsageError("--secret-expires is for client secrets: a certificate's expiry is "
                         "read from it")  # fmt: skip
    return certificate, None if secret_expires is None else parse_expiry_date(secret_expires)


def ask_params(service: Service, params: dict[str, str]) -> dict[str, str]:
    """Required parameters (no default in the catalog) are asked right after the service."""
    from oauthtok.catalog import param_problem, required_params

    for key in required_params(service):
        while not params.get(key):
            if not output.can_prompt():
                raise UsageError(f"service {service.name!r} needs --param {key}=VALUE")
            value = ask(f"{key} (--param {key}=…)")
            problem = param_problem(service, key, value)
            if problem:
                say(f"{problem}; try again.")
            else:
                params[key] = value
    return params


def ask_testing(service: Service, params: dict[str, str]) -> dict[str, str]:
    """Where the catalog limits a grant's life only for apps in "Testing" (Google: 7 days),
    ask on a terminal whether this app is, unless `--param testing=…` said so."""
    from oauthtok.lifecycle import TESTING_PARAM

    days = service.refresh_token_max_days
    if days is None or TESTING_PARAM not in service.params or TESTING_PARAM in params:
        return params
    if not output.can_prompt():
        return params  # the catalog's default
    testing = typer.confirm(
        f'Is the app in "Testing" ({service.name} ends such grants {days:g} days after '
        f"consent)? (--param {TESTING_PARAM}=yes|no)",
        default=False,
        err=True,
    )
    return {**params, TESTING_PARAM: "yes" if testing else "no"}


def choose_scopes(service: Service) -> tuple[str, ...]:
    from rich.markup import escape
    from rich.table import Table

    from oauthtok.scopes import closest_scope, split_scopes

    if not output.can_prompt():
        if service.default_scopes:
            return service.default_scopes
        raise UsageError("missing --scopes (no terminal to ask on)")
    names = list(service.scopes)
    table = Table("#", "SCOPE", "WHAT IT ALLOWS", show_edge=False, pad_edge=False)
    table.columns[1].overflow = "fold"
    table.columns[2].overflow = "fold"
    for i, scope in enumerate(names, 1):
        table.add_row(str(i), escape(scope), escape(terminal_text(service.scopes[scope])))
    console(stderr=True).print(table)
    default = " ".join(service.default_scopes) or None
    while True:
        answer = ask("scopes (numbers or names, separated by spaces or commas)", default)
        chosen: list[str] = []
        problem = None
        for item in split_scopes(answer):
            if item.isdigit():
                if not 1 <= int(item) <= len(names):
                    problem = f"there is no scope number {item} (1-{len(names)})"
                    break
                chosen.append(names[int(item) - 1])
            elif names and item not in service.scopes:
                near = closest_scope(service, item)
                hint = f" (did you mean {near!r}?)" if near else ""
                say(f"{item!r} is not in the {service.name} catalog{hint}.")
                if not typer.confirm(f"Ask for {item!r} anyway?", default=False, err=True):
                    problem = "then choose the scopes again"
                    break
                chosen.append(item)
            else:
                chosen.append(item)
        if problem is None and chosen:
            return tuple(dict.fromkeys(chosen))
        message = problem or "no scopes chosen"
        say(f"{message[0].upper()}{message[1:]}.")


def warn_unknown(service: Service, unknown: Iterable[tuple[str, str | None]]) -> None:
    """A warning for each (scope, closest catalog scope) the catalog does not list."""
    for scope, near in unknown:
        hint = f" (closest: {near})" if near else ""
        say(f"warning: scope {scope!r} is not in the {service.name} catalog{hint}; asking for it")


def advise_scopes(service: Service, chosen: tuple[str, ...], app_only: bool) -> tuple[str, ...]:
    """Warn about scopes not in the catalog; offer the refresh scope when it is missing."""
    from oauthtok.scopes import advise, number_problem

    if not chosen:
        raise UsageError(f"no scopes given; `oauthtok show-help {service.name}` lists them")
    problem = number_problem(service, chosen)
    if problem:
        raise UsageError(problem)
    advice = advise(service, chosen, app_only=app_only)
    warn_unknown(service, advice.unknown)
    refresh = advice.missing_refresh_scope
    if refresh:
        say(f"warning: without {refresh!r} the token will not refresh and stops working at expiry")
        if output.can_prompt() and typer.confirm(f"Add {refresh!r}?", default=True, err=True):
            chosen = (refresh, *chosen)
    return chosen


# -- showing the sign-in -----------------------------------------------------------------------


class ConsoleSignIn:
    """The sign-in as a person sees it: URL or code on stderr, browser, spinner, paste."""

    def __init__(self, open_browser: bool) -> None:
        self.open_browser = open_browser
        self._status: Any = None

    def authorization_url(self, url: str, paste: Callable[[str], bool] | None) -> None:
        say("Open this URL in a browser to sign in:")
        say(f"  {terminal_text(url, cap=None)}")
        if paste is not None:
            from urllib.parse import parse_qs, urlsplit

            redirect = parse_qs(urlsplit(url).query).get("redirect_uri", ["the loopback"])[0]
            say(
                f"After you approve, the browser goes to {redirect}… which may fail to load: "
                "copy that whole address from the address bar, paste it here and press Enter. "
                "(oauthtok listens there too: an SSH port forward to it works as well.)"
            )
            import threading

            threading.Thread(target=self._read_pastes, args=(paste,), daemon=True).start()
            return
        if self.open_browser:
            import threading
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
        uri = terminal_text(device.verification_uri)
        say(f"To sign in, open {uri} on any device and enter the code:")
        say(f"  {terminal_text(device.user_code, 60)}")
        if device.verification_uri_complete:
            say(f"(or open {terminal_text(device.verification_uri_complete)})")
        self._spin("Waiting for approval (Ctrl-C to cancel)…")

    def notice(self, message: str) -> None:
        say(terminal_text(message, cap=1000))

    def _spin(self, text: str) -> None:
        if sys.stderr.isatty():
            self._status = console(stderr=True).status(text)
            self._status.start()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def run_sign_in(action: Callable[[ConsoleSignIn], Any], ui: ConsoleSignIn, unchanged: str) -> Any:
    """Run a sign-in; Ctrl-C says what was kept."""
    try:
        return action(ui)
    except KeyboardInterrupt:
        ui.stop()
        raise Cancelled(f"cancelled; {unchanged}") from None
    finally:
        ui.stop()


def reauthorize_in_background(
    manager: TokenManager, name: str, secret: str | None, new_scopes: tuple[str, ...] | None
) -> None:
    import time

    from oauthtok.deviceauth import start

    pending = start(manager, name, secret, new_scopes)
    device = pending.device
    until = time.strftime("%H:%M", time.localtime(pending.expires_at))
    complete = device.verification_uri_complete
    also = f" (or open {complete})" if complete else ""
    say(
        f"To reauthorize {pending.record.name!r}, open {device.verification_uri} and enter the "
        f"code {device.user_code}{also}."
    )
    if pending.warning:
        say(f"warning: {pending.warning}")
    else:
        say("The notify command was given the code.")
    say(
        f"A background process (pid {pending.pid}) waits for the approval until {until} and "
        "then stores the new tokens; a denial or an expired code is notified."
    )


def announce_store(manager: TokenManager) -> None:
    """The file store is a choice with consequences: say once where the secrets go and what
    protects them (the keyring, the default, goes without saying)."""
    from oauthtok.stores import FILE, describe, kind_of

    if kind_of(manager.store.secrets) == FILE:
        say(f"Secrets go to the {describe(manager.store.secrets)}.")


# -- the commands ------------------------------------------------------------------------------


@commands.command("create")
def create_command(
    name: Annotated[
        str | None,
        typer.Argument(help="Friendly name scripts will use (asked when missing).", metavar="NAME"),
    ] = None,
    service: ServiceName = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", metavar="ID", help="The app's client id.")
    ] = None,
    scopes: Scopes = None,
    param: Params = None,
    client_secret_stdin: SecretStdin = False,
    public: Annotated[
        bool, typer.Option("--public", help="Public client: no secret, PKCE only.")
    ] = False,
    timeout: Timeout = DEFAULT_AUTH_TIMEOUT,
    no_browser: NoBrowser = False,
    flow: FlowOption = None,
    client_certificate: ClientCertificate = None,
    secret_expires: SecretExpires = None,
) -> None:
    """Sign in and store the tokens under NAME.

    Anything missing is asked on a terminal. The client secret comes from a hidden prompt
    (asked twice; empty means a public client), from one line of stdin with
    --client-secret-stdin, or from OAUTHTOK_CLIENT_SECRET; never from the command line.
    --client-certificate authenticates with a key and certificate instead (private_key_jwt).
    Microsoft: --param cloud=global|usgov|china chooses the national cloud.
    """
    from oauthtok.catalog import get_service, load_catalog, parse_params
    from oauthtok.kit import cloud_params, cloud_scopes
    from oauthtok.manager import NewToken, TokenManager, browser_available
    from oauthtok.scopes import split_scopes

    if public and client_secret_stdin:
        raise UsageError("--public and --client-secret-stdin do not go together")
    certificate, expires = read_credential_options(client_certificate, secret_expires)
    if certificate is not None and (public or client_secret_stdin):
        raise UsageError("--client-certificate replaces the client secret: drop "
                         "--public and --client-secret-stdin")  # fmt: skip
    chosen_flow = flow or Flow.BROWSER
    secret = None if public else read_client_secret(client_secret_stdin)
    if certificate is not None:
        secret = None  # a secret in OAUTHTOK_CLIENT_SECRET is not used (and not passed on)
    manager = TokenManager()
    try:
        manager.store.check_available()  # before anything is asked or opened
        announce_store(manager)
        new_name = choose_name(manager, name)
        entry = get_service(service, load_catalog()) if service else choose_service()
        given = parse_params(param or [])
        params = ask_testing(entry, ask_params(entry, cloud_params(entry, given)))
        new_client_id = client_id if client_id is not None else ask("client id")
        if not public and secret is None and certificate is None:
            secret = prompt_secret(allow_public=chosen_flow != Flow.CLIENT_CREDENTIALS)
            public = secret is None
        asked = split_scopes(scopes) if scopes is not None else choose_scopes(entry)
        asked = cloud_scopes(asked, given.get("cloud"))
        asked = advise_scopes(entry, asked, app_only=chosen_flow == Flow.CLIENT_CREDENTIALS)
    except (KeyboardInterrupt, typer.Abort):
        raise Cancelled() from None  # nothing could have been saved yet
    new = NewToken(new_name, entry, new_client_id, secret, asked, params, public, chosen_flow,
                   certificate=certificate, secret_expires_at=expires)  # fmt: skip
    record = run_sign_in(
        lambda ui: manager.create(new, ui, timeout=timeout, browser_ok=browser_available()),
        ConsoleSignIn(open_browser=not no_browser),
        "nothing was saved",
    )
    if record.missing_scopes:
        say(f"warning: the provider did not grant: {' '.join(record.missing_scopes)}")
    say(f"Saved token {record.name!r} ({describe_validity(record)}).")
    say(f"Use it with: {command('token', record.name)}")


@commands.command("reauthorize")
def reauthorize_command(
    name: Name,
    client_secret_stdin: NewSecretStdin = False,
    scopes: Annotated[
        str | None,
        typer.Option(
            "--scopes",
            metavar='"SCOPE …"',
            help="Ask for these scopes instead of the stored ones (spaces or commas).",
        ),
    ] = None,
    add_scope: Annotated[
        list[str] | None,
        typer.Option("--add-scope", "-a", metavar="SCOPE", help="Ask for this scope too."),
    ] = None,
    remove_scope: Annotated[
        list[str] | None,
        typer.Option("--remove-scope", "-r", metavar="SCOPE", help="Stop asking for it."),
    ] = None,
    timeout: Timeout = DEFAULT_AUTH_TIMEOUT,
    no_browser: NoBrowser = False,
    flow: FlowOption = None,
    client_certificate: ClientCertificate = None,
    secret_expires: SecretExpires = None,
    notify: Annotated[
        bool,
        typer.Option(
            "--notify",
            help="With --flow device: send the code through the [notify] command and return at "
            "once; a background process waits for the approval and stores the new tokens.",
        ),
    ] = False,
) -> None:
    """Sign in again and replace the tokens.

    The stored service, client and flow are used again. --scopes replaces the scopes,
    --add-scope/--remove-scope change them; the old tokens stay until the new consent succeeds.
    --client-certificate replaces the client's credential with a key and certificate, and
    --client-secret-stdin with a new secret (also a certificate's, back to a secret);
    --secret-expires records when the client secret expires. With --flow device --notify nobody
    needs to be at this terminal: the code goes to the notify command (a phone), and the sign-in
    finishes in the background (a denial or an expired code notifies reauthorization-needed
    again).
    """
    from oauthtok.manager import TokenManager, browser_available, catalog_service
    from oauthtok.scopes import advise, number_problem, split_scopes

    manager = TokenManager()
    record = manager.store.get(name)
    new_scopes = None
    if scopes is not None or add_scope or remove_scope:
        base = split_scopes(scopes) if scopes is not None else record.scopes
        drop = set(remove_scope or ())
        unknown = sorted(drop - set(base))
        if unknown:
            raise UsageError(f"{record.name!r} does not ask for {unknown[0]!r}")
        new_scopes = tuple(dict.fromkeys(s for s in (*base, *(add_scope or ())) if s not in drop))
        typed = (*(split_scopes(scopes) if scopes is not None else ()), *(add_scope or ()))
        entry = catalog_service(record.service)
        problem = number_problem(entry, typed)  # what is typed, not what is stored
        if problem:
            raise UsageError(problem)
        if entry is not None:
            warn_unknown(entry, advise(entry, typed, app_only=True).unknown)
    certificate, expires = read_credential_options(client_certificate, secret_expires)
    if certificate is not None and client_secret_stdin:
        raise UsageError("--client-certificate replaces the client secret: drop "
                         "--client-secret-stdin")  # fmt: skip
    # a certificate's token moves to a secret only when one is given on purpose (stdin), not
    # because OAUTHTOK_CLIENT_SECRET happens to be set
    to_secret = record.token_auth == TokenAuth.PRIVATE_KEY_JWT and client_secret_stdin
    with_key = certificate is not None or (
        record.token_auth == TokenAuth.PRIVATE_KEY_JWT and not to_secret
    )
    secret = read_client_secret(client_secret_stdin)
    if with_key:
        if secret is not None and certificate is None:
            say(
                f"note: {SECRET_ENV} is not used: {record.name!r} authenticates with a "
                "certificate (to switch it to a secret, give one with --client-secret-stdin)"
            )
        secret = None  # a secret in OAUTHTOK_CLIENT_SECRET is not used (and not passed on)
    if notify:
        if (flow or record.flow) != Flow.DEVICE:
            raise UsageError("--notify works with --flow device (a code approved elsewhere)")
        if certificate is not None or expires is not None or to_secret:
            raise UsageError(
                "--notify keeps the client's credential: change it (--client-certificate, "
                "--client-secret-stdin, --secret-expires) in a reauthorize at a terminal"
            )
        reauthorize_in_background(manager, record.name, secret, new_scopes)
        return
    outcome = run_sign_in(
        lambda ui: manager.reauthorize(
            record.name, ui, timeout=timeout, client_secret=secret, flow=flow,
            browser_ok=browser_available(), new_scopes=new_scopes, certificate=certificate,
            secret_expires_at=expires,
        ),
        ConsoleSignIn(open_browser=not no_browser),
        f"the stored tokens of {record.name!r} are unchanged",
    )  # fmt: skip
    say(f"Reauthorized {outcome.name!r} ({describe_validity(outcome)}).")
    if outcome.token_auth != record.token_auth:
        say(f"The client now authenticates with its {'certificate' if certificate else 'secret'}"
            f" ({outcome.token_auth}).")  # fmt: skip
        if record.token_auth == TokenAuth.PRIVATE_KEY_JWT:
            say("Its certificate and key left the secret store: remove the certificate from the "
                "app registration too.")  # fmt: skip
        elif record.token_auth != TokenAuth.NONE:
            say("Its secret left the secret store: remove it from the app registration too.")
    elif record.secret_expires_at is not None and outcome.secret_expires_at is None:
        say("The new client secret's expiry is not known (the old one's no longer applies): "
            f"`{command('reauthorize', record.name)} --secret-expires YYYY-MM-DD` records it, "
            "to be warned before it expires.")  # fmt: skip
    if (
        record.account
        and outcome.account
        and record.account.casefold() != outcome.account.casefold()
    ):
        say(
            f"warning: {outcome.name!r} now belongs to {outcome.account!r}, no longer to "
            f"{record.account!r}: the sign-in used another account"
        )
    if outcome.missing_scopes:
        say(f"warning: the provider did not grant: {' '.join(outcome.missing_scopes)}")
