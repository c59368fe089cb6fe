"""The service catalog: load the layered TOML files, validate them, fill {placeholders}.

Layers, later ones overriding earlier ones key by key within a service (tables such as
`scopes` and `params` are merged one level deep): the bundled `services.toml`, the user's
`services.toml` in the config dir, then each file named in `OAUTHTOK_SERVICES`.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from oauthtok import paths
from oauthtok.errors import AuthorizationFailed, CatalogError, ProviderError, UsageError
from oauthtok.models import Endpoints, Flow, TokenAuth
from oauthtok.sanitize import terminal_text

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Service:
    """One entry of the service catalog, as written (placeholders not yet filled)."""

    name: str
    title: str
    origin: str
    authorize_url: str | None = None
    token_url: str | None = None
    device_authorization_url: str | None = None
    revocation_url: str | None = None
    #: the expected issuer; with no token_url the endpoints are discovered from it
    issuer: str | None = None
    #: a regular expression (placeholders filled and escaped) any issuer of it matches
    issuer_pattern: str | None = None
    redirect_uri: str = "http://127.0.0.1"
    params: dict[str, str] = field(default_factory=dict)
    refresh_scope: str | None = None
    token_auth: TokenAuth = TokenAuth.CLIENT_SECRET_POST
    authorize_params: dict[str, str] = field(default_factory=dict)
    scopes: dict[str, str] = field(default_factory=dict)
    default_scopes: tuple[str, ...] = ()
    help: str = ""
    #: prefixes the provider drops when it reports granted scopes (Microsoft's resource URLs)
    scope_prefixes: tuple[str, ...] = ()
    #: the provider's own spelling of a scope → the one a person asks for (Google's `email`)
    scope_aliases: dict[str, str] = field(default_factory=dict)
    #: an error code or AADSTS number → what to change (`KEY/public`: for public clients)
    error_hints: dict[str, str] = field(default_factory=dict)
    #: the flow to use when no browser can be opened (default: device if there is one, else paste)
    headless_flow: Flow | None = None
    #: endpoint keys of a bundled service that a later catalog layer changed → that layer
    endpoint_overrides: dict[str, str] = field(default_factory=dict)
    #: RFC 7662 token introspection (`inspect --remote`)
    introspection_url: str | None = None
    #: the refresh token lapses when unused this long (Microsoft: 90); see `lifecycle`
    refresh_token_idle_days: float | None = None
    #: the grant ends this long after consent (Google apps in "Testing": 7); see `lifecycle`
    refresh_token_max_days: float | None = None


BUNDLED = "bundled"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_URL_KEYS = (
    "authorize_url", "token_url", "device_authorization_url", "revocation_url", "issuer",
    "introspection_url",
)  # fmt: skip
_STRING_KEYS = (
    *_URL_KEYS,
    "issuer_pattern",
    "title",
    "redirect_uri",
    "refresh_scope",
    "token_auth",
    "help",
    "headless_flow",
)
_TABLE_KEYS = ("params", "authorize_params", "scopes", "scope_aliases", "error_hints")
_LIST_KEYS = ("default_scopes", "scope_prefixes")
#: keys that decide where secrets and codes go: a layer changing them over a bundled service
#: is said aloud at create and reauthorize
_ENDPOINT_KEYS = (*_URL_KEYS, "issuer_pattern")
MAX_CATALOG_BYTES = 1_000_000
#: the service's refresh-token rules, in days (see `lifecycle`)
_DAYS_KEYS = ("refresh_token_idle_days", "refresh_token_max_days")
KNOWN_KEYS = frozenset((*_STRING_KEYS, *_TABLE_KEYS, *_LIST_KEYS, *_DAYS_KEYS))


def bundled_catalog_path() -> Path:
    """The catalog shipped in the wheel, or the repository's top-level file in a source tree."""
    here = Path(__file__).resolve().parent
    shipped = here / "services.toml"
    return shipped if shipped.is_file() else here.parents[1] / "services.toml"


def catalog_layers() -> list[tuple[str, Path]]:
    """(origin label, path) of every catalog file that applies, lowest priority first."""
    layers: list[tuple[str, Path]] = [(BUNDLED, bundled_catalog_path())]
    user = Path(paths.user_catalog_path())
    if user.is_file():
        layers.append((str(user), user))
    for item in os.environ.get("OAUTHTOK_SERVICES", "").split(os.pathsep):
        if item.strip():
            path = Path(item.strip()).expanduser()
            if not path.is_file():
                raise CatalogError(
                    f"{path}: no such file (named in OAUTHTOK_SERVICES); fix or unset the variable"
                )
            layers.append((str(path), path))
    return layers


def _parse(label: str, path: Path) -> dict[str, Any]:
    where = path if label == BUNDLED else label
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_CATALOG_BYTES:
            raise CatalogError(f"{where}: over {MAX_CATALOG_BYTES // 1000} kB; not a catalog")
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{where}: invalid TOML: {exc}") from None
    except RecursionError:
        raise CatalogError(f"{where}: nested too deeply to be a catalog") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{where}: cannot read the catalog: {exc}") from None
    extra = sorted(set(data) - {"services"})
    if extra:
        raise CatalogError(f"{where}: unknown top-level key {extra[0]!r}; only [services.NAME]")
    services = data.get("services", {})
    if not isinstance(services, dict):
        raise CatalogError(f"{where}: 'services' must be a table of [services.NAME] tables")
    for name, entry in services.items():
        if not isinstance(entry, dict):
            raise CatalogError(f"{where}: services.{name} must be a table")
    return services


def load_catalog() -> dict[str, Service]:
    """Every service, validated, keyed by name (sorted)."""
    merged: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    redirected: dict[str, dict[str, str]] = {}
    for label, path in catalog_layers():
        for name, entry in _parse(label, path).items():
            where = path if label == BUNDLED else label
            _check_keys(where, name, entry)
            target = merged.setdefault(name, {})
            if (label != BUNDLED and origins.get(name) == BUNDLED) or name in redirected:
                for key in _ENDPOINT_KEYS:
                    if key in entry and entry[key] != target.get(key):
                        redirected.setdefault(name, {})[key] = label
            for key, value in entry.items():
                if (
                    key in _TABLE_KEYS
                    and isinstance(value, dict)
                    and isinstance(target.get(key), dict)
                ):
                    target[key] = {**target[key], **value}
                else:
                    target[key] = value
            origins[name] = label
    catalog = {name: _build(name, merged[name], origins[name]) for name in sorted(merged)}
    for name, changes in redirected.items():
        catalog[name] = replace(catalog[name], endpoint_overrides=changes)
    return catalog


def _unfilled(url: str | None) -> str | None:
    return url


def endpoint_notice(service: Service, params: Mapping[str, str]) -> str | None:
    """One line when a layer over the bundled catalog changed where this service sends the
    client secret and the codes: which file, and the new host (said before any browser opens)."""
    if not service.endpoint_overrides:
        return None
    try:
        fill = _filler(service, params)
    except UsageError:
        fill = _unfilled
    parts = []
    for key, origin in sorted(service.endpoint_overrides.items()):
        url = fill(getattr(service, key))
        host = urlsplit(url).netloc if url else "(removed)"
        parts.append(f"{key} → {terminal_text(host, 80)} (from {terminal_text(origin, 200)})")
    return f"note: the bundled service {service.name!r} is changed by your catalog: " + "; ".join(
        parts
    )


def get_service(name: str, catalog: Mapping[str, Service] | None = None) -> Service:
    catalog = load_catalog() if catalog is None else catalog
    if name in catalog:
        return catalog[name]
    close = closest_service(name, catalog)
    if close is not None and close.casefold() == name.casefold():
        return catalog[close]
    known = ", ".join(catalog) or "none"
    hint = f"did you mean {close!r}? " if close else ""
    raise UsageError(f"unknown service {name!r}; {hint}known services: {known}")


def _check_keys(where: object, name: str, entry: Mapping[str, Any]) -> None:
    if not _NAME.match(name):
        raise CatalogError(f"{where}: service name {name!r} may use only letters, digits, _ . -")
    for key in entry:
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CatalogError(f"{where}: service {name!r}: unknown key {key!r}{hint}")


def _build(name: str, entry: dict[str, Any], origin: str) -> Service:
    def fail(msg: str) -> CatalogError:
        return CatalogError(f"{origin}: service {name!r}: {msg}")

    for key in _STRING_KEYS:
        if key in entry and not isinstance(entry[key], str):
            raise fail(f"{key!r} must be a string")
    for key in _TABLE_KEYS:
        value = entry.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise fail(f"{key!r} must be a table of strings")
    for key in _LIST_KEYS:
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f"{key!r} must be a list of strings")
    for key in _DAYS_KEYS:
        days = entry.get(key)
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 3650
        ):
            raise fail(f"{key!r} must be a number of days between 0 and 3650, not {days!r}")
    if not entry.get("title"):
        raise fail("missing key 'title'")
    if not entry.get("token_url") and not entry.get("issuer"):
        raise fail("missing key 'token_url' (or 'issuer', to discover the endpoints)")
    token_auth = entry.get("token_auth", "client_secret_post")
    if token_auth not in set(TokenAuth):
        methods = ", ".join(TokenAuth)
        raise fail(f"token_auth must be one of {methods}, not {token_auth!r}")
    headless = entry.get("headless_flow")
    if headless is not None and headless not in (Flow.PASTE, Flow.DEVICE):
        raise fail(f"headless_flow must be paste or device, not {headless!r}")
    params = entry.get("params", {})
    for key in _URL_KEYS:
        url = entry.get(key)
        if url is None:
            continue
        for placeholder in _PLACEHOLDER.findall(url):
            if placeholder not in params:
                raise fail(
                    f"{key} uses unknown placeholder {{{placeholder}}}; "
                    f"declare it under params (known: {', '.join(params) or 'none'})"
                )
        if any(not params[p] for p in _PLACEHOLDER.findall(url)):
            continue  # a required --param: checked once it is filled in
        sample = _PLACEHOLDER.sub(lambda m: params[m.group(1)], url)
        problem = url_problem(sample)
        if problem:
            raise fail(f"{key} {url!r}: {problem}")
    pattern = entry.get("issuer_pattern")
    if pattern is not None:
        unknown = [p for p in _PLACEHOLDER.findall(pattern) if p not in params and "," not in p
                   and not p.isdigit()]  # fmt: skip
        if unknown:
            raise fail(f"issuer_pattern uses unknown placeholder {{{unknown[0]}}}")
        try:
            re.compile(_PLACEHOLDER.sub(lambda m: m.group(0) if m.group(1) not in params else
                                        "x", pattern))  # fmt: skip
        except re.error as exc:
            raise fail(f"issuer_pattern is not a regular expression ({exc})") from None
    redirect = entry.get("redirect_uri", "http://127.0.0.1")
    problem = redirect_uri_problem(redirect)
    if problem:
        raise fail(f"redirect_uri {redirect!r}: {problem}")
    return Service(
        name=name,
        title=entry["title"],
        origin=origin,
        authorize_url=entry.get("authorize_url"),
        token_url=entry.get("token_url"),
        issuer=entry.get("issuer"),
        issuer_pattern=entry.get("issuer_pattern"),
        device_authorization_url=entry.get("device_authorization_url"),
        revocation_url=entry.get("revocation_url"),
        redirect_uri=redirect,
        params=dict(params),
        refresh_scope=entry.get("refresh_scope"),
        token_auth=TokenAuth(token_auth),
        authorize_params=dict(entry.get("authorize_params", {})),
        scopes=dict(entry.get("scopes", {})),
        default_scopes=tuple(entry.get("default_scopes", [])),
        help=entry.get("help", ""),
        scope_prefixes=tuple(entry.get("scope_prefixes", [])),
        scope_aliases=dict(entry.get("scope_aliases", {})),
        error_hints=dict(entry.get("error_hints", {})),
        headless_flow=Flow(headless) if headless else None,
        introspection_url=entry.get("introspection_url"),
        refresh_token_idle_days=_days(entry.get("refresh_token_idle_days")),
        refresh_token_max_days=_days(entry.get("refresh_token_max_days")),
    )


def _days(value: object) -> float | None:
    """A validated number of days (see `_build`), or None when the key is absent."""
    return float(value) if isinstance(value, int | float) else None


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why `url` may not be used as a provider endpoint, or None when it is fine."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if not parts.hostname:
        return "not an absolute URL with a host"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return None
    return "endpoints must use https (plain http only for a loopback host)"


def redirect_uri_problem(uri: str) -> str | None:
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme != "http" or not is_loopback_host(parts.hostname):
        return "must be http://localhost, http://127.0.0.1 or http://[::1] (a loopback redirect)"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    return None


def resolve_params(service: Service, given: Mapping[str, str]) -> dict[str, str]:
    """The service's {placeholder} defaults overridden by `--param K=V` values."""
    unknown = sorted(set(given) - set(service.params))
    if unknown:
        known = ", ".join(service.params) or "none"
        raise UsageError(
            f"service {service.name!r} has no parameter {unknown[0]!r} (parameters: {known})"
        )
    values = {**service.params, **given}
    missing = [k for k, v in values.items() if not v]
    if missing:
        raise UsageError(f"service {service.name!r} needs --param {missing[0]}=VALUE")
    return values


def _filler(service: Service, params: Mapping[str, str]) -> Any:
    values = resolve_params(service, params)

    def fill(url: str | None) -> str | None:
        if url is None:
            return None
        filled = _PLACEHOLDER.sub(lambda m: values[m.group(1)], url)
        problem = url_problem(filled)
        if problem:
            raise UsageError(f"{filled!r}: {problem}; check the --param values")
        return filled

    return fill


def resolve_endpoints(
    service: Service, params: Mapping[str, str], client: httpx.Client | None = None
) -> Endpoints:
    """Fill the placeholders (the results are checked again: https unless loopback).

    A service's `issuer` is the identity its authorization responses must carry (RFC 9207).
    When the catalog does not list both the authorization and the token endpoint, the rest are
    discovered from the issuer's metadata through `client`; listed endpoints win.
    """
    fill = _filler(service, params)
    listed = {
        "authorize_url": fill(service.authorize_url),
        "token_url": fill(service.token_url),
        "device_authorization_url": fill(service.device_authorization_url),
        "revocation_url": fill(service.revocation_url),
        "introspection_url": fill(service.introspection_url),
    }
    issuer = fill(service.issuer)
    pattern = None
    if service.issuer_pattern:
        values = resolve_params(service, params)
        pattern = _PLACEHOLDER.sub(
            lambda m: re.escape(values[m.group(1)]) if m.group(1) in values else m.group(0),
            service.issuer_pattern,
        )
    iss_required = False
    if issuer and not (listed["authorize_url"] and listed["token_url"]):
        if client is None:
            raise ValueError("discovery needs an HTTP client")
        found = discover_endpoints(client, issuer)
        listed = {k: v or getattr(found, k) for k, v in listed.items()}
        iss_required = found.iss_required
    token_url = listed.pop("token_url")
    assert token_url is not None  # validated at load time, or discovered
    return Endpoints(
        token_url=token_url, issuer=issuer, issuer_pattern=pattern, iss_required=iss_required,
        **listed,
    )  # fmt: skip


def resolve_issuer(service: Service, params: Mapping[str, str]) -> str | None:
    """The service's issuer with its {placeholders} filled in (None: the service has none)."""
    if not service.issuer:
        return None
    filled: str | None = _filler(service, params)(service.issuer)
    return filled


def well_known_urls(issuer: str) -> list[str]:
    """OpenID Connect Discovery first, then RFC 8414 (which inserts before the path)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    base = f"{parts.scheme}://{parts.netloc}"
    return [
        f"{base}{path}/.well-known/openid-configuration",
        f"{base}/.well-known/oauth-authorization-server{path}",
    ]


def discover_endpoints(client: httpx.Client, issuer: str) -> Endpoints:
    """Read the provider's metadata (bounded: `netio`); refuse a document that names another
    issuer."""
    from oauthtok import netio

    document: dict[str, Any] | None = None
    tried = []
    for url in well_known_urls(issuer):
        tried.append(url)
        try:
            reply = netio.send(client, "GET", url, headers={"Accept": "application/json"})
        except ProviderError as exc:
            raise ProviderError(f"cannot read the metadata of {issuer!r}: {exc}") from None
        if reply.status == 200:
            document = reply.json()
            break
        if reply.status >= 500:
            raise ProviderError(f"{url} answered HTTP {reply.status}; retry later")
    if document is None:
        raise AuthorizationFailed(
            f"no discovery document for issuer {issuer!r} (tried {', '.join(tried)}); "
            "check --param issuer"
        )
    if document.get("issuer") != issuer:
        raise AuthorizationFailed(
            f"the discovery document of {issuer!r} names another issuer "
            f"({terminal_text(document.get('issuer'))!r}); refusing it (RFC 8414 §3.3)"
        )
    endpoints: dict[str, str | None] = {}
    for ours, theirs in (
        ("authorize_url", "authorization_endpoint"),
        ("token_url", "token_endpoint"),
        ("device_authorization_url", "device_authorization_endpoint"),
        ("revocation_url", "revocation_endpoint"),
        ("introspection_url", "introspection_endpoint"),
    ):
        value = document.get(theirs)
        if value is not None:
            problem = url_problem(str(value)) if isinstance(value, str) else "not a string"
            if problem:
                raise AuthorizationFailed(
                    f"discovered {theirs} {terminal_text(value)!r}: {problem}"
                )
        endpoints[ours] = value
    if not endpoints["token_url"]:
        raise AuthorizationFailed(f"the discovery document of {issuer!r} has no token_endpoint")
    token_url = endpoints.pop("token_url")
    assert token_url is not None
    required = document.get("authorization_response_iss_parameter_supported") is True
    return Endpoints(token_url=token_url, issuer=issuer, iss_required=required, **endpoints)


def parse_params(items: Iterable[str]) -> dict[str, str]:
    """`--param K=V` values into a dict."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param takes KEY=VALUE, not {item!r}")
        result[key.strip()] = value.strip()
    return result


def overview_text(catalog: Mapping[str, Service]) -> str:
    """`oauthtok show-help` without a service: how to choose one."""
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
    return "\n".join(lines) + "\n"


def help_markdown(service: Service) -> str:
    """`oauthtok show-help SERVICE`: registering the app, its scopes, redirect URI, parameters
    (Markdown; rendered on a terminal, printed as it is when piped)."""
    parts = [service.help.strip() or f"# {service.title}", "", "## Scopes", ""]
    parts += [f"- `{scope}` — {desc}" for scope, desc in service.scopes.items()]
    if service.refresh_scope:
        parts += ["", f"Include `{service.refresh_scope}`, or the token will not refresh."]
    port_note = "" if urlsplit(service.redirect_uri).port else " (any port)"
    parts += ["", "## Redirect URI to register", "", f"`{service.redirect_uri}`{port_note}"]
    if service.params:
        parts += ["", "## Parameters (`--param KEY=VALUE`)", ""]
        parts += [f"- `{k}` (default `{v or 'required'}`)" for k, v in service.params.items()]
    return "\n".join(parts) + "\n"


def param_problem(service: Service, key: str, value: str) -> str | None:
    """Why `value` cannot be the parameter `key` (an endpoint it fills would not be https),
    checked when it is typed rather than after everything else was asked."""
    values = {k: v or "x" for k, v in service.params.items()}
    values[key] = value
    for url_key in _URL_KEYS:
        template = getattr(service, url_key)
        if template and "{" + key + "}" in template:
            filled = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), "x"), template)
            problem = url_problem(filled)
            if problem:
                return f"{terminal_text(value, 100)!r}: {problem}"
    return None


def required_params(service: Service) -> list[str]:
    """The parameters without a default: `create` must be given (or asked) each of them."""
    return [k for k, v in service.params.items() if not v]


def closest_service(name: str, catalog: Mapping[str, Service]) -> str | None:
    lowered = {n.casefold(): n for n in catalog}
    if name.casefold() in lowered:
        return lowered[name.casefold()]
    matches = difflib.get_close_matches(name.casefold(), list(lowered), n=1, cutoff=0.6)
    return lowered[matches[0]] if matches else None
