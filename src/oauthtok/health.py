"""`oauthtok status`: the environment (secret store, config, catalog, data folder, clock) and
each token's health (ok, attention soon, or needs re-authorization), for people and monitors.

`examine()` gathers everything into a `Report` and raises the notifications the tokens' states
call for; the CLI only renders it. Nothing is refreshed unless `check` is asked for (then each
grant is proved at the provider by a refresh).

Exit code (`Report.exit_code`): 8 when the secret store or the data folder is unusable, else 4
when a token needs re-authorization, else 7 when config.toml or the catalog is invalid, else
6 when `--check` could not reach a provider, else 9 when a grant lapses (or a client secret
expires) within the warning window, else 0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oauthtok import grants, lifecycle, paths
from oauthtok.errors import (
    CatalogError,
    OauthtokError,
    ProviderError,
    ReauthorizationRequired,
    StoreError,
    command,
)
from oauthtok.models import TokenRecord

if TYPE_CHECKING:
    from oauthtok.catalog import Service

EXIT_CONFIG = 7
EXIT_PROVIDER = 6


@dataclass(frozen=True)
class Part:
    """One line of the environment: what it is, and the problem with it (None: fine)."""

    summary: str
    problem: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        return {**self.details, "summary": self.summary, "ok": self.ok, "problem": self.problem}


@dataclass(frozen=True)
class Check:
    """`--check`: what proving the grant at the provider gave."""

    ok: bool
    detail: str
    #: the failure was passing (network, provider): exit 6, not 4
    transient: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class TokenHealth:
    record: TokenRecord
    evaluation: lifecycle.Evaluation
    check: Check | None = None

    @property
    def last_refresh(self) -> float | None:
        return self.record.refresh_used_at or self.record.refreshed_at

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            **self.evaluation.to_json(),
            "service": r.service,
            "account": r.account,
            "expires_at": None if r.expires_at is None else int(r.expires_at),
            "last_refresh": None if self.last_refresh is None else int(self.last_refresh),
            "last_error": r.last_error,
            "last_error_at": None if r.last_error_at is None else int(r.last_error_at),
            "check": None if self.check is None else self.check.to_json(),
        }


@dataclass
class Report:
    store: Part
    config: Part
    catalog: Part
    data_dir: Part
    clock: Part
    tokens: list[TokenHealth] = field(default_factory=list)
    #: notifications that could not be raised, one line each
    warnings: list[str] = field(default_factory=list)

    def environment(self) -> list[tuple[str, Part]]:
        return [
            ("secret store", self.store),
            ("config", self.config),
            ("catalog", self.catalog),
            ("data folder", self.data_dir),
            ("clock", self.clock),
        ]

    @property
    def exit_code(self) -> int:
        evaluations = [t.evaluation for t in self.tokens]
        usable = self.store.ok and self.data_dir.ok
        code = lifecycle.overall_exit(evaluations, store_usable=usable)
        if code in (lifecycle.EXIT_STORE, lifecycle.EXIT_NEEDS_REAUTHORIZATION):
            return code
        if not (self.config.ok and self.catalog.ok):
            return EXIT_CONFIG
        if any(t.check is not None and t.check.transient for t in self.tokens):
            return EXIT_PROVIDER
        return code

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": {
                key.replace(" ", "_"): part.to_json() for key, part in self.environment()
            },
            "tokens": [t.to_json() for t in self.tokens],
            "exit_code": self.exit_code,
        }


# -- the environment ----------------------------------------------------------------------------


def _config_part() -> tuple[Part, Any]:
    from oauthtok.config import config_path, load_config

    path = config_path()
    try:
        cfg = load_config(path)
    except CatalogError as exc:
        return Part(f"{path}: invalid", str(exc), {"path": path}), None
    shown = path if cfg.exists else f"{path} (none: the defaults)"
    notify = "notifications on" if cfg.notify.command is not None else "no [notify] command"
    return Part(f"{shown}; {notify}", None, {"path": path, "exists": cfg.exists}), cfg


def _catalog_part() -> tuple[Part, dict[str, Service] | None]:
    from oauthtok.catalog import catalog_layers, load_catalog

    try:
        layers = catalog_layers()
        catalog = load_catalog()
    except CatalogError as exc:
        return Part("invalid", str(exc)), None
    origins = [label for label, _ in layers]
    return Part(", ".join(origins), None, {"layers": origins}), catalog


def _data_dir_part(data_dir: str) -> Part:
    import stat

    from oauthtok import layout
    from oauthtok.store import check_ours

    details: dict[str, Any] = {"path": data_dir}
    try:
        info = os.lstat(data_dir)
    except FileNotFoundError:
        return Part(f"{data_dir} (not made yet: no tokens)", None, {**details, "exists": False})
    except OSError as exc:
        return Part(data_dir, f"cannot inspect {data_dir}: {exc.strerror or exc}", details)
    mode = stat.S_IMODE(info.st_mode)
    ours = not hasattr(os, "geteuid") or info.st_uid == os.geteuid()
    details.update(exists=True, owner_uid=info.st_uid, mode=f"{mode:04o}")
    owner = "yours" if ours else f"owned by uid {info.st_uid}"
    summary = f"{data_dir}: {owner}, mode {mode:04o}"
    try:
        for path in (data_dir, layout.names_path(data_dir)):
            check_ours(path)
    except StoreError as exc:
        return Part(summary, str(exc), details)
    return Part(summary, None, details)


def _clock_part(now: float) -> Part:
    utc = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    local = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(now))
    return Part(f"{utc} (local {local})", None, {"now": int(now)})


# -- the tokens ---------------------------------------------------------------------------------


def _prove(manager: Any, record: TokenRecord) -> tuple[TokenRecord, Check, OauthtokError | None]:
    """`--check`: refresh the grant at the provider."""
    if not record.renews_itself:
        return record, Check(True, "not checked: no refresh token to prove it with"), None
    try:
        outcome = manager.refresh(record, force=True)
    except ReauthorizationRequired as exc:
        return manager.store.get_by_id(record.id, record.name), Check(False, str(exc)), exc
    except (ProviderError, StoreError) as exc:
        fresh = manager.store.get_by_id(record.id, record.name)
        return fresh, Check(False, str(exc), transient=True), exc
    return outcome.record, Check(True, "refreshed at the provider"), None


def _missing_secrets(record: TokenRecord, lapse_at: float | None) -> lifecycle.Evaluation:
    return lifecycle.Evaluation(
        record.id,
        record.name,
        lifecycle.NEEDS_REAUTHORIZATION,
        "the secret store holds no secrets for it (keyring reset, or another store chosen?)",
        lifecycle.EXIT_NEEDS_REAUTHORIZATION,
        lapse_at,
        lifecycle.EVENT_REAUTHORIZATION_NEEDED,
        command("reauthorize", record.name),
    )


def examine(
    names: Sequence[str] = (),
    *,
    warn_days: float = lifecycle.DEFAULT_WARN_DAYS,
    check: bool = False,
    notify: bool = True,
) -> Report:
    """Everything `status` shows. TokenNotFound (exit 3) for a name that is not stored."""
    from oauthtok import alerts, stores
    from oauthtok.manager import TokenManager
    from oauthtok.secretstore import SecretStore
    from oauthtok.store import TokenStore

    now = time.time()
    data_dir = paths.data_dir()
    config_part, cfg = _config_part()
    catalog_part, catalog = _catalog_part()
    report = Report(
        store=Part("unknown: config.toml, which chooses it, is invalid"),
        config=config_part,
        catalog=catalog_part,
        data_dir=_data_dir_part(data_dir),
        clock=_clock_part(now),
    )
    secrets = None
    answers = False  # the chosen store answered: its entries may be read
    if cfg is not None:
        secrets = stores.open_secrets(data_dir, cfg=cfg)
        described = stores.describe(secrets)
        chosen = f"chosen by {cfg.store.backend_from}"
        details = {"backend": stores.kind_of(secrets), "chosen_by": cfg.store.backend_from}
        try:
            stores.check(secrets)
            report.store = Part(f"{described}, {chosen}: answers", None, details)
            answers = True
        except StoreError as exc:
            report.store = Part(f"{described}, {chosen}", str(exc), details)
    # without a valid config the store is unknown: the metadata is still shown, never a secret
    store = TokenStore(secrets=secrets or SecretStore(), data_dir=data_dir)
    if not report.data_dir.ok:
        return report
    try:
        records = [store.get(n) for n in names] if names else store.records()
    except StoreError as exc:
        report.data_dir = Part(report.data_dir.summary, str(exc), report.data_dir.details)
        return report
    manager = TokenManager(store)
    to = alerts.notifier(data_dir, cfg) if notify and cfg is not None else None
    warn_seconds = warn_days * lifecycle.DAY
    for record in records:
        proof = None
        failure = None
        if check and answers:
            record, proof, failure = _prove(manager, record)
        service = None if catalog is None else catalog.get(record.service)
        rules = grants.rules_for(record, service)
        evaluation = lifecycle.evaluate(grants.to_grant(record), rules, now, warn_seconds)
        if answers and evaluation.state != lifecycle.NEEDS_REAUTHORIZATION:
            try:
                present = store.secrets.get(record.id) is not None
            except StoreError:
                present = True  # the store's own problem is reported above
            if not present:
                evaluation = _missing_secrets(record, evaluation.lapses_at)
        report.tokens.append(TokenHealth(record, evaluation, proof))
        if to is None:
            continue
        if isinstance(failure, ProviderError):
            warning = alerts.raise_event(alerts.failure_event(record, failure), to)
        else:
            warning = alerts.for_evaluation(evaluation, record, to)
        if warning:
            report.warnings.append(warning)
    return report
