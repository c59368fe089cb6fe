"""Scope policy: advice before a sign-in, and what the provider really left out after it.

Providers report granted scopes in their own spelling: Microsoft in short form (`User.Read`
for `https://graph.microsoft.com/User.Read`), Google in long form
(`https://www.googleapis.com/auth/userinfo.email` for `email`). The catalog says how per
service (`scope_prefixes`, `scope_aliases`), so comparing needs no code per provider.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oauthtok.catalog import Service


#: OpenID Connect Core §3.1.2.1: granted when an id_token comes back
OPENID = "openid"


@dataclass(frozen=True)
class ScopeAdvice:
    """What to tell the person about the scopes they chose, before anything is sent."""

    #: (scope, closest catalog scope or None) for scopes the catalog does not list
    unknown: tuple[tuple[str, str | None], ...]
    #: the scope that makes the provider issue a refresh token, when it is missing
    missing_refresh_scope: str | None


def closest_scope(service: Service, scope: str) -> str | None:
    matches = difflib.get_close_matches(scope, list(service.scopes), n=1, cutoff=0.5)
    if matches:
        return matches[0]
    tail = scope.rsplit("/", 1)[-1].casefold()
    for known in service.scopes:
        if known.rsplit("/", 1)[-1].casefold() == tail:
            return known
    return None


def advise(service: Service, scopes: Sequence[str], *, app_only: bool = False) -> ScopeAdvice:
    unknown = tuple(
        (scope, closest_scope(service, scope))
        for scope in scopes
        if service.scopes and scope not in service.scopes
    )
    refresh = service.refresh_scope
    missing = refresh if refresh and refresh not in scopes and not app_only else None
    return ScopeAdvice(unknown, missing)


def number_problem(service: Service | None, scopes: Iterable[str]) -> str | None:
    """A number where a scope name belongs (`--scopes "1 3"`): the numbers are the prompt's
    (the catalog's order may change), so a command line must name the scopes."""
    if service is None or not service.scopes:
        return None
    for scope in scopes:
        if scope.isdigit() and scope not in service.scopes:
            return (
                f"{scope!r} is a number, not a scope: name the scopes (numbers work only when "
                f"oauthtok asks); `oauthtok show-help {service.name}` lists them"
            )
    return None


def split_scopes(text: str) -> tuple[str, ...]:
    """Scopes typed by a person: separated by spaces or commas, duplicates dropped."""
    return tuple(dict.fromkeys(s for s in text.replace(",", " ").split() if s))


def normalize(service: Service | None, scope: str) -> str:
    """The comparable form of a scope, in the spelling of either the request or the reply."""
    if service is not None:
        scope = service.scope_aliases.get(scope, scope)
        for prefix in service.scope_prefixes:
            if scope.startswith(prefix):
                scope = scope[len(prefix) :]
                break
    return scope.casefold()


def missing_scopes(
    service: Service | None,
    asked: Iterable[str],
    granted: Sequence[str] | None,
    *,
    got_refresh_token: bool,
    got_id_token: bool,
) -> tuple[str, ...]:
    """The asked scopes the provider really did not grant (none when it did not say)."""
    if granted is None:
        return ()
    have = {normalize(service, s) for s in granted}
    refresh_scope = service.refresh_scope if service is not None else "offline_access"
    missing = []
    for scope in asked:
        if scope == refresh_scope and got_refresh_token:
            continue
        if scope == OPENID and got_id_token:
            continue
        if normalize(service, scope) not in have:
            missing.append(scope)
    return tuple(missing)
