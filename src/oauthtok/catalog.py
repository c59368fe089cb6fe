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
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from oauthtok import paths
from oauthtok.errors import AuthorizationFailed, CatalogError, ProviderError, UsageError
from oauthtok.models import Endpoints, Flow, Service, TokenAuth

if TYPE_CHECKING:
    import httpx

BUNDLED = "bundled"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_URL_KEYS = ("authorize_url", "token_url", "device_authorization_url", "revocation_url", "issuer")
_STRING_KEYS = (
    *_URL_KEYS,
    "title",
    "redirect_uri",
    "refresh_scope",
    "token_auth",
    "help",
    "headless_flow",
)
_TABLE_KEYS = ("params", "authorize_params", "scopes", "scope_aliases", "error_hints")
_LIST_KEYS = ("default_scopes", "scope_prefixes")
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
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{where}: invalid TOML: {exc}") from None
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
    for label, path in catalog_layers():
        for name, entry in _parse(label, path).items():
            where = path if label == BUNDLED else label
            _check_keys(where, name, entry)
            target = merged.setdefault(name, {})
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
    return {name: _build(name, merged[name], origins[name]) for name in sorted(merged)}


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

    A service with an `issuer` has its endpoints discovered through `client`; endpoints the
    catalog lists explicitly take precedence over discovered ones.
    """
    fill = _filler(service, params)
    listed = {
        "authorize_url": fill(service.authorize_url),
        "token_url": fill(service.token_url),
        "device_authorization_url": fill(service.device_authorization_url),
        "revocation_url": fill(service.revocation_url),
    }
    if service.issuer:
        if client is None:
            raise ValueError("discovery needs an HTTP client")
        found = discover_endpoints(client, fill(service.issuer) or "")
        listed = {k: v or getattr(found, k) for k, v in listed.items()}
    token_url = listed.pop("token_url")
    assert token_url is not None  # validated at load time, or discovered
    return Endpoints(token_url=token_url, **listed)


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
    """Read the provider's metadata; refuse a document that names another issuer."""
    import httpx

    document: dict[str, Any] | None = None
    tried = []
    for url in well_known_urls(issuer):
        tried.append(url)
        try:
            response = client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"cannot reach {urlsplit(url).netloc} for discovery ({type(exc).__name__}); "
                "check the network and the issuer, then retry"
            ) from None
        if response.status_code == 200:
            try:
                document = response.json()
            except ValueError:
                document = None
            if isinstance(document, dict):
                break
            raise ProviderError(f"{url} is not a JSON metadata document")
        if response.status_code >= 500:
            raise ProviderError(f"{url} answered HTTP {response.status_code}; retry later")
    if document is None:
        raise AuthorizationFailed(
            f"no discovery document for issuer {issuer!r} (tried {', '.join(tried)}); "
            "check --param issuer"
        )
    if document.get("issuer") != issuer:
        raise AuthorizationFailed(
            f"the discovery document of {issuer!r} names another issuer "
            f"({document.get('issuer')!r}); refusing it (RFC 8414 §3.3)"
        )
    endpoints: dict[str, str | None] = {}
    for ours, theirs in (
        ("authorize_url", "authorization_endpoint"),
        ("token_url", "token_endpoint"),
        ("device_authorization_url", "device_authorization_endpoint"),
        ("revocation_url", "revocation_endpoint"),
    ):
        value = document.get(theirs)
        if value is not None:
            problem = url_problem(str(value)) if isinstance(value, str) else "not a string"
            if problem:
                raise AuthorizationFailed(f"discovered {theirs} {value!r}: {problem}")
        endpoints[ours] = value
    if not endpoints["token_url"]:
        raise AuthorizationFailed(f"the discovery document of {issuer!r} has no token_endpoint")
    token_url = endpoints.pop("token_url")
    assert token_url is not None
    return Endpoints(token_url=token_url, **endpoints)


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


def required_params(service: Service) -> list[str]:
    """The parameters without a default: `create` must be given (or asked) each of them."""
    return [k for k, v in service.params.items() if not v]


def closest_service(name: str, catalog: Mapping[str, Service]) -> str | None:
    lowered = {n.casefold(): n for n in catalog}
    if name.casefold() in lowered:
        return lowered[name.casefold()]
    matches = difflib.get_close_matches(name.casefold(), list(lowered), n=1, cutoff=0.6)
    return lowered[matches[0]] if matches else None
