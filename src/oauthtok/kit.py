"""The use cases of the mail and Microsoft 365 kit: proving a token works where it is used
(`test`), what a token says about itself (`inspect`), the admin-consent link (`consent-url`),
national clouds at `create`, and the dates client credentials expire.

They tie the kit's building blocks (`logintest`, `jwtinfo`, `m365`, `client_cert`) to the
store and the catalog; the CLI (`cli/kit_cmds.py`, `cli/signin.py`) only parses and prints.
No typer or rich here.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from oauthtok import contract
from oauthtok.errors import UsageError

if TYPE_CHECKING:
    import httpx

    from oauthtok.catalog import Service
    from oauthtok.jwtinfo import TokenInfo
    from oauthtok.manager import TokenManager
    from oauthtok.models import TokenRecord

#: seconds `oauthtok test` may take in all (connect, TLS, login, logout)
DEFAULT_TEST_TIMEOUT = 30.0


# -- credentials that expire --------------------------------------------------------------------


def parse_expiry_date(text: str, now: float | None = None) -> int:
    """`--secret-expires YYYY-MM-DD` → Unix time of that day's start (UTC), the earliest the
    secret may stop working. A date that has passed is refused: it is a typo, or the secret
    is dead already."""
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--secret-expires takes a date as YYYY-MM-DD, not {text!r}") from None
    if len(text.strip()) != 10:
        raise UsageError(f"--secret-expires takes a date as YYYY-MM-DD, not {text!r}")
    moment = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
    now = time.time() if now is None else now
    if moment + 86400 <= now:
        raise UsageError(
            f"--secret-expires {day.isoformat()} has passed; give the date the client secret "
            "expires (the app registration shows it)"
        )
    return moment


# -- national clouds at create ------------------------------------------------------------------


def cloud_params(service: Service, given: Mapping[str, str]) -> dict[str, str]:
    """`--param cloud=NAME` turned into the service's `authority` parameter (m365's table);
    other parameters unchanged. UsageError for a service without clouds."""
    from oauthtok import m365

    return m365.apply_cloud(service.params, given)


def cloud_scopes(scopes: Sequence[str], cloud: str | None) -> tuple[str, ...]:
    """Scopes written for the global cloud moved to `cloud`'s resource hosts."""
    if cloud is None:
        return tuple(scopes)
    from oauthtok import m365

    return m365.translate_scopes(scopes, cloud)


# -- admin consent ------------------------------------------------------------------------------


def _descriptions(service_name: str) -> dict[str, str]:
    from oauthtok.catalog import load_catalog

    service = load_catalog().get(service_name)
    return dict(service.scopes) if service else {}


def consent_for_token(record: TokenRecord) -> str:
    """The admin-consent link and what it grants, for a stored Microsoft token (its client,
    tenant, cloud and scopes)."""
    from oauthtok import m365

    cloud = m365.cloud_of_authority(record.params.get("authority", ""))
    if cloud is None:
        raise UsageError(
            f"{record.name!r} is a {record.service} token; admin-consent links are Microsoft's "
            "(tokens of the microsoft service)"
        )
    return _consent(record.client_id, record.params.get("tenant", ""), record.scopes,
                    record.redirect_uri, cloud.name, _descriptions(record.service))  # fmt: skip


def consent_for_client(
    service: Service, client_id: str, given: Mapping[str, str], scopes: Sequence[str] | None
) -> str:
    """The admin-consent link for a client that has no token here yet: `--service microsoft
    --client-id ID --param tenant=T [--param cloud=C] [--scopes …]` (default: the service's
    default scopes, moved to the cloud's hosts)."""
    from oauthtok import m365
    from oauthtok.catalog import resolve_params

    if "authority" not in service.params:
        raise UsageError(
            f"service {service.name!r} has no admin-consent link; it is Microsoft's "
            "(--service microsoft)"
        )
    params = resolve_params(service, cloud_params(service, given))
    cloud = m365.cloud_of_authority(params["authority"])
    if cloud is None:
        raise UsageError(f"--param authority={params['authority']} is not a Microsoft cloud; "
                         f"use --param cloud={'|'.join(m365.CLOUDS)}")  # fmt: skip
    asked = tuple(scopes) if scopes else cloud_scopes(service.default_scopes, cloud.name)
    return _consent(client_id, params.get("tenant", ""), asked, service.redirect_uri, cloud.name,
                    dict(service.scopes))  # fmt: skip


def _consent(
    client_id: str,
    tenant: str,
    scopes: Sequence[str],
    redirect_uri: str,
    cloud: str,
    descriptions: Mapping[str, str],
) -> str:
    from oauthtok import m365

    url = m365.admin_consent_url(
        client_id=client_id, tenant=tenant, scopes=scopes, redirect_uri=redirect_uri,
        cloud_name=cloud,
    )  # fmt: skip
    return m365.consent_text(url=url, client_id=client_id, tenant=tenant, scopes=scopes,
                             descriptions=descriptions, cloud_name=cloud)  # fmt: skip


# -- inspect ------------------------------------------------------------------------------------


def inspect_token(
    manager: TokenManager,
    name: str,
    *,
    use: str | None = None,
    remote: bool = False,
    timeout: float = 30.0,
) -> TokenInfo:
    """What the stored access token says about itself (decoded locally, no network), checked
    for `use` (imap | smtp | pop). `remote` also asks the service's RFC 7662 introspection
    endpoint, authenticated as the client: the answer for an opaque token, an `active` check
    for a JWT. The stored token is read as it is (never refreshed)."""
    from oauthtok import jwtinfo
    from oauthtok.manager import client_auth
    from oauthtok.oauth import new_http_client

    record = manager.store.get(name)
    tokens = manager.store.read_tokens(record)
    tenant = record.params.get("tenant")
    local = jwtinfo.decode(
        tokens.access_token, use=use, expected_tenant=tenant, client_id=record.client_id
    )
    if not remote:
        return local
    auth = client_auth(record, tokens)
    deadline = time.monotonic() + timeout
    with new_http_client() as client:
        url = introspection_url(record, client)
        assertion = None
        if auth.certificate is not None:
            assertion = auth.certificate.form_fields(client_id=auth.client_id, token_url=url)
        answer = jwtinfo.introspect(client, url, tokens.access_token, auth, deadline, assertion)
    if local.format == "jwt":
        return replace(local, problems=_unique(local.problems, answer.problems))
    checked = jwtinfo.explain(answer, use=use, expected_tenant=tenant, client_id=record.client_id)
    return replace(answer, problems=_unique(answer.problems, checked))


def _unique(*groups: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p for group in groups for p in group))


def introspection_url(record: TokenRecord, client: httpx.Client) -> str:
    """The token's introspection endpoint: kept with it since it was created, else from the
    catalog entry (tokens created before the key existed; discovery when the entry says so)."""
    url = record.endpoints.introspection_url
    if url is None:
        from oauthtok.catalog import load_catalog, resolve_endpoints

        service = load_catalog().get(record.service)
        if service is not None:
            url = resolve_endpoints(service, record.params, client).introspection_url
    if not url:
        raise UsageError(
            f"service {record.service!r} names no introspection endpoint (catalog key "
            "introspection_url), so only the local decoding is possible: drop --remote"
        )
    return url


# -- test ---------------------------------------------------------------------------------------


def login_test(
    manager: TokenManager,
    name: str,
    *,
    imap: str | None = None,
    smtp: str | None = None,
    url: str | None = None,
    user: str | None = None,
    tls_mode: str | None = None,
    mechanism: str | None = None,
    timeout: float = DEFAULT_TEST_TIMEOUT,
    report: Callable[[str], None],
) -> None:
    """Log in with the token where it is used: IMAP or SMTP (SASL OAUTHBEARER or XOAUTH2, as
    `user`, default the token's account) or an HTTP GET with the bearer token. The token is
    the one `oauthtok token` would hand out (refreshed first when due).

    Returns when the login works; AuthorizationFailed (5) when the server refuses the token,
    ProviderError (6) when it cannot be reached, UsageError (2) for a bad target."""
    from oauthtok import logintest

    targets = [t for t in (imap, smtp, url) if t is not None]
    if len(targets) != 1:
        raise UsageError("say where to log in: one of --imap HOST[:PORT], --smtp HOST[:PORT], "
                         "--url URL")  # fmt: skip
    if url is not None and (tls_mode or mechanism or user is not None):
        raise UsageError("--url takes none of --user, --tls/--starttls/--plain, --mechanism")
    protocol = "imap" if imap is not None else "smtp"
    target = None
    if url is None:  # usage errors before any token is read or refreshed
        target = logintest.parse_target(imap or smtp or "", protocol)
        logintest.resolve_tls_mode(*target, tls_mode)
    outcome = manager.valid_token(name)
    token = outcome.tokens.access_token
    deadline = time.monotonic() + timeout
    if target is None:
        assert url is not None
        logintest.test_http(url, token, report=report, deadline=deadline)
        return
    login = contract.sasl_user(user, outcome.record.account, token, outcome.tokens.id_token)
    run = logintest.test_imap if protocol == "imap" else logintest.test_smtp
    run(*target, login, token, tls_mode=tls_mode, mechanism=mechanism, report=report,
        deadline=deadline)  # fmt: skip
