"""The Microsoft 365 admin kit: national clouds, the admin-consent link and the text an
admin can forward with it, and the resource identifiers `inspect` checks audiences against.

Pure functions over data: no network, no typer/rich. The cloud table below is the one home
of Microsoft's per-cloud hosts; the catalog's `microsoft` service takes the sign-in host as
its `{authority}` parameter, which `apply_cloud` fills from `--param cloud=NAME`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from oauthtok.errors import UsageError


@dataclass(frozen=True)
class Cloud:
    """One Microsoft cloud instance (Entra ID national clouds)."""

    name: str
    title: str
    #: the Entra ID sign-in host (token, authorize, device and adminconsent endpoints)
    authority: str
    #: the Microsoft Graph resource (scopes are GRAPH + "/Mail.Read", ...)
    graph: str
    #: Exchange Online resources, the one used in scopes first
    outlook: tuple[str, ...]
    imap_host: str
    smtp_host: str
    #: where admins register apps and grant consent
    portal: str


#: Microsoft's tables "Microsoft Entra authentication endpoints" and "Microsoft Graph
#: national cloud deployments"; usgov is GCC High (DoD uses dod-graph.microsoft.us).
CLOUDS: dict[str, Cloud] = {
    "global": Cloud(
        name="global",
        title="Microsoft global cloud",
        authority="login.microsoftonline.com",
        graph="https://graph.microsoft.com",
        outlook=("https://outlook.office.com", "https://outlook.office365.com"),
        imap_host="outlook.office365.com",
        smtp_host="smtp.office365.com",
        portal="https://entra.microsoft.com",
    ),
    "usgov": Cloud(
        name="usgov",
        title="Microsoft 365 US Government (GCC High)",
        authority="login.microsoftonline.us",
        graph="https://graph.microsoft.us",
        outlook=("https://outlook.office365.us",),
        imap_host="outlook.office365.us",
        smtp_host="smtp.office365.us",
        portal="https://portal.azure.us",
    ),
    "china": Cloud(
        name="china",
        title="Microsoft 365 operated by 21Vianet (China)",
        authority="login.partner.microsoftonline.cn",
        graph="https://microsoftgraph.chinacloudapi.cn",
        outlook=("https://partner.outlook.cn",),
        imap_host="partner.outlook.cn",
        smtp_host="smtp.partner.outlook.cn",
        portal="https://portal.azure.cn",
    ),
}

#: well-known application ids of Microsoft's resources (v1 tokens carry them as `aud`)
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"

#: tenants that are not one organization: admin consent needs a real one (or `organizations`)
_NOT_A_TENANT = ("common", "consumers")


def cloud(name: str) -> Cloud:
    try:
        return CLOUDS[name.strip().lower()]
    except KeyError:
        raise UsageError(f"unknown cloud {name!r}; use --param cloud={'|'.join(CLOUDS)}") from None


def cloud_of_authority(authority: str) -> Cloud | None:
    """The cloud whose sign-in host is `authority` (a host, or a URL on it)."""
    host = urlsplit(authority).hostname if "://" in authority else authority
    host = (host or "").lower().rstrip(".")
    return next((c for c in CLOUDS.values() if c.authority == host), None)


def apply_cloud(declared: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str]:
    """`--param cloud=NAME` → the service's `authority` parameter; other params unchanged.

    `declared` are the service's catalog params (with defaults), `given` the user's. Refuses
    a cloud for a service without an `authority` parameter and a conflicting authority."""
    result = dict(given)
    name = result.pop("cloud", None)
    if name is None:
        return result
    if "authority" not in declared:
        raise UsageError("this service has no national clouds (no `authority` parameter)")
    chosen = cloud(name)
    if result.get("authority", chosen.authority).lower() != chosen.authority:
        raise UsageError(
            f"--param authority={result['authority']} contradicts --param cloud={chosen.name} "
            f"({chosen.authority}); give one of them"
        )
    result["authority"] = chosen.authority
    return result


def _resource_map(target: Cloud) -> dict[str, str]:
    """Global resource URL → the same resource in `target` (for scopes)."""
    world = CLOUDS["global"]
    mapping = {world.graph: target.graph}
    for url in world.outlook:
        mapping[url] = target.outlook[0]
    return mapping


def translate_scopes(scopes: Iterable[str], cloud_name: str) -> tuple[str, ...]:
    """Scopes written for the global cloud (`https://graph.microsoft.com/Mail.Read`) rewritten
    for another cloud's resource hosts; other scopes (openid, offline_access) unchanged."""
    target = cloud(cloud_name)
    if target is CLOUDS["global"]:
        return tuple(scopes)
    mapping = _resource_map(target)
    result = []
    for scope in scopes:
        for prefix, replacement in mapping.items():
            if scope.lower().startswith(prefix + "/"):
                scope = replacement + scope[len(prefix) :]
                break
        result.append(scope)
    return tuple(result)


def graph_audiences() -> frozenset[str]:
    return frozenset({GRAPH_APP_ID, *(c.graph for c in CLOUDS.values())})


def outlook_audiences() -> frozenset[str]:
    return frozenset({EXCHANGE_APP_ID, *(url for c in CLOUDS.values() for url in c.outlook)})


def admin_consent_url(
    *,
    client_id: str,
    tenant: str,
    scopes: Iterable[str],
    redirect_uri: str,
    cloud_name: str = "global",
    state: str | None = None,
) -> str:
    """The v2.0 admin-consent link (Microsoft identity platform, "Admin consent"):
    ``https://{authority}/{tenant}/v2.0/adminconsent?client_id=…&scope=…&redirect_uri=…
    &state=…``. The tenant is the organization's id or domain (or `organizations`)."""
    tenant = tenant.strip()
    if not tenant or tenant.lower() in _NOT_A_TENANT:
        raise UsageError(
            f"admin consent is given in one organization, not {tenant or 'an empty tenant'!r}: "
            "give --param tenant=<tenant id or domain> (or tenant=organizations)"
        )
    if "/" in tenant or "?" in tenant or "#" in tenant:
        raise UsageError(f"--param tenant={tenant!r} is not a tenant id or domain")
    scope_list = [s for s in scopes if s]
    if not scope_list:
        raise UsageError("admin consent needs the scopes to grant: give --scopes")
    if not client_id.strip():
        raise UsageError("admin consent needs --client-id")
    query = {
        "client_id": client_id.strip(),
        "scope": " ".join(scope_list),
        "redirect_uri": redirect_uri,
        "state": state or secrets.token_urlsafe(16),
    }
    host = cloud(cloud_name).authority
    return f"https://{host}/{quote(tenant, safe='')}/v2.0/adminconsent?" + urlencode(
        query, quote_via=quote
    )


def permission_lines(scopes: Iterable[str], descriptions: Mapping[str, str]) -> list[str]:
    """One line per requested permission with what it allows (the catalog's description)."""
    lines = []
    for scope in scopes:
        about = descriptions.get(scope)
        if about is None:  # Microsoft's scope names are case-insensitive
            about = next((v for k, v in descriptions.items() if k.lower() == scope.lower()), None)
        lines.append(f"  - {scope}: {about or 'not in oauthtok catalog; check the name'}")
    return lines


def consent_text(
    *,
    url: str,
    client_id: str,
    tenant: str,
    scopes: Iterable[str],
    descriptions: Mapping[str, str],
    cloud_name: str = "global",
) -> str:
    """The link and, below it, what it grants: text an admin can forward as it is."""
    scope_list = list(scopes)
    app_only = any(s.endswith("/.default") for s in scope_list)
    target = cloud(cloud_name)
    lines = [
        url,
        "",
        f"Admin consent for application {client_id} in tenant {tenant} ({target.title}).",
        "Open the link above as an administrator who may grant tenant-wide consent (Global",
        "Administrator, Privileged Role Administrator, or Cloud Application Administrator for",
        "delegated permissions) and accept. It grants the application, for the whole tenant:",
        *permission_lines(scope_list, descriptions),
    ]
    if app_only:
        lines += [
            "",
            "`.default` grants the application permissions configured on the app registration",
            f"(API permissions in {target.portal}); for IMAP/POP/SMTP the mailboxes must also be",
            "granted in Exchange Online (New-ServicePrincipal, Add-MailboxPermission).",
        ]
    lines += [
        "",
        "After accepting, the browser is sent to the app's redirect URI; when that is",
        "http://localhost, an error page there is expected: the consent is already recorded.",
    ]
    return "\n".join(lines)
