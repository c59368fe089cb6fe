"""Stored tokens and the life of their grants: the glue between `TokenRecord`, the catalog's
rules and `lifecycle` (which knows neither).

- `after_grant`, `after_refresh`, `after_failure`: the metadata to store after a consent, a
  successful refresh and a failed one (obtained, last used, rotated, the provider's own
  refresh-token lifetime, the last error);
- `rules_for`, `lapse_of`, `lapses_at`: a token's predicted lapse, from the catalog's
  `refresh_token_idle_days` / `refresh_token_max_days` and the provider's own answer;
- `catalog_or_none`: the catalog for predictions, or None when it cannot be read (a lapse
  is then predicted from the provider's answer alone; `status` reports the broken catalog).
"""

from __future__ import annotations

from oauthtok import lifecycle

TYPE_CHECKING = False  # typing costs ~4 ms to import: `list` and `show` answer without it
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from oauthtok.catalog import Service
    from oauthtok.models import TokenRecord
    from oauthtok.oauth import Grant


def _response(grant: Grant) -> dict[str, Any]:
    """What `lifecycle` reads of a token response: its lifetimes, and whether a refresh token
    came (True, never the token itself)."""
    return {**grant.extra, "refresh_token": grant.tokens.refresh_token is not None}


def after_grant(grant: Grant, now: float) -> dict[str, Any]:
    """TokenRecord fields after a consent (create, reauthorize)."""
    return lifecycle.grant_changes(_response(grant), now)


def after_refresh(grant: Grant, now: float, record: TokenRecord) -> dict[str, Any]:
    """TokenRecord fields after a successful refresh."""
    return lifecycle.refresh_changes(_response(grant), now, record.refresh_expires_at)


def after_failure(message: str, now: float, *, permanent: bool) -> dict[str, Any]:
    """TokenRecord fields after a failed refresh (`permanent`: the grant was rejected). The
    message carries the provider's text: kept as one line of printable characters."""
    printable = "".join(c if c.isprintable() else " " for c in message)
    return lifecycle.failure_changes(printable, now, permanent)


def to_grant(record: TokenRecord) -> lifecycle.Grant:
    # the record's own fields (no JSON copy: `list` does this for every token)
    return lifecycle.Grant.from_json(vars(record))


def rules_for(record: TokenRecord, service: Service | None) -> lifecycle.LapseRules:
    """The lapse rules of a token: those kept with it at its last consent, else the catalog's."""
    if record.lapse_rules is not None:
        return lifecycle.LapseRules(
            idle_days=record.lapse_rules.get("idle_days"),
            max_days=record.lapse_rules.get("max_days"),
        )
    if service is None:
        return lifecycle.LapseRules()
    return lifecycle.LapseRules.for_token(
        service.refresh_token_idle_days,
        service.refresh_token_max_days,
        service.params,
        record.params,
    )


def rules_snapshot(service: Service | None, params: Mapping[str, str]) -> dict[str, float | None]:
    """The rules to keep with a token at its consent (like its endpoints: `list` then needs no
    catalog, and a later catalog change applies at the next reauthorize)."""
    if service is None:
        return {"idle_days": None, "max_days": None}
    rules = lifecycle.LapseRules.for_token(
        service.refresh_token_idle_days, service.refresh_token_max_days, service.params, params
    )
    return {"idle_days": rules.idle_days, "max_days": rules.max_days}


def needs_catalog(records: list[TokenRecord]) -> bool:
    """True when some token predates kept rules, so the catalog must be read for them."""
    return any(r.lapse_rules is None for r in records)


def lapse_of(record: TokenRecord, catalog: Mapping[str, Service] | None) -> lifecycle.Lapse:
    service = None if catalog is None else catalog.get(record.service)
    return lifecycle.predict_lapse(to_grant(record), rules_for(record, service))


def lapses_at(record: TokenRecord, catalog: Mapping[str, Service] | None) -> float | None:
    """The predicted end of the grant (Unix time), or None when none is predicted."""
    service = None if catalog is None else catalog.get(record.service)
    return lifecycle.lapses_at(to_grant(record), rules_for(record, service))


def catalog_or_none() -> dict[str, Service] | None:
    from oauthtok.catalog import load_catalog
    from oauthtok.errors import CatalogError

    try:
        return load_catalog()
    except CatalogError:
        return None
