"""Benchmark of the script path: `oauthtok token`, `oauthtok list`, and refresh under load.

Run from the repository root, in the venv of the README's test command:

    .venv/bin/python bench/bench.py [--rounds 30] [--warmup 3] [--tokens 1000]

It starts its own private Secret Services (one holding 1 token, one holding N), seeds the
stores directly (no provider needed), and runs the rows interleaved (A B C D E, A B C D E, ...)
so that a change in machine load hits every row alike. Then 20 concurrent `oauthtok token`
processes on an expired token against the Authlib test server on loopback. It prints medians,
ratios, and pass/fail against the targets, and exits 1 if a target is missed.
It is a benchmark, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oauthtok import layout  # noqa: E402
from oauthtok.contract import SECRET_NAMESPACE  # noqa: E402
from oauthtok.models import Endpoints, TokenRecord, TokenSet  # noqa: E402
from oauthtok.store import TokenStore, atomic_write, ensure_private_dir, new_token_id  # noqa: E402
from tests.secret_service_daemon import private_secret_service  # noqa: E402

BIN = Path(sys.executable).parent
OAUTHTOK = str(BIN / "oauthtok")
ACCESS = "eyJ0eXAiOiJKV1QiLCJub25jZSI6" + "x" * 2400  # a Microsoft-sized access token
REFRESH = "0.AQcA" + "r" * 1400


def record(name: str, token_url: str, expires_at: float) -> TokenRecord:
    return TokenRecord(
        id=new_token_id(),
        name=name,
        service="microsoft",
        client_id="11111111-2222-3333-4444-555555555555",
        endpoints=Endpoints(
            token_url=token_url,
            authorize_url="https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        ),
        token_auth="client_secret_post",
        redirect_uri="http://localhost",
        scopes=("offline_access", "https://outlook.office.com/IMAP.AccessAsUser.All"),
        granted_scopes=("offline_access", "https://outlook.office.com/IMAP.AccessAsUser.All"),
        params={"tenant": "common"},
        created_at=time.time(),
        refreshed_at=time.time(),
        expires_at=expires_at,
        has_refresh_token=True,
        lapse_rules={"idle_days": 90.0, "max_days": None},  # as `create` keeps for Microsoft
    )


def seed(env: dict[str, str], data_dir: str, count: int) -> list[TokenRecord]:
    """`count` tokens: metadata files written directly, secrets through one D-Bus connection
    with the attributes keyring itself writes."""
    import secretstorage

    os.environ["DBUS_SESSION_BUS_ADDRESS"] = env["DBUS_SESSION_BUS_ADDRESS"]
    expires = time.time() + 86400
    records = [
        record(f"bench-{i:04d}", "https://login.microsoftonline.com/x/token", expires)
        for i in range(count)
    ]
    conn = secretstorage.dbus_init()
    collection = secretstorage.get_default_collection(conn)
    store = TokenStore(data_dir=data_dir)
    for r in records:
        secret = TokenSet(
            access_token=ACCESS,
            refresh_token=REFRESH,
            expires_at=expires,
            client_secret="client-secret",
        )
        attributes = {
            "service": SECRET_NAMESPACE,
            "username": r.id,
            "application": "Python keyring library",
        }
        collection.create_item(
            f"Password for '{r.id}' on 'oauthtok'",
            attributes,
            secret.dumps().encode(),
            replace=True,
        )
        store._write_record(r)
    ensure_private_dir(data_dir)
    names = {r.name: r.id for r in records}
    atomic_write(
        layout.names_path(data_dir),
        json.dumps({"version": layout.INDEX_VERSION, "names": names}).encode(),
    )
    conn.close()
    return records


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall ms, exit code, stdout) of one process.

    Its output goes to a temporary file, as `> out.json` would, not to a pipe: through a pipe
    the benchmark's own reading (Python's communicate loop, on the same 2 cores) becomes part
    of the time of a command with a large output (`list --json` of 1,000 tokens: 1.2 MB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=err)
        elapsed = (time.perf_counter() - started) * 1000
        out.seek(0)
        return elapsed, proc.returncode, out.read().decode()


# Linux keeps a process's peak RSS across exec, so a child forked from this (large) process
# would report at least this process's size. A minimal interpreter forks the command instead;
# its own ~8 MB is the floor of what it can report.
RSS_HELPER = (
    "import os,sys\n"
    "pid=os.fork()\n"
    "if pid==0:\n"
    " fd=os.open(os.devnull,os.O_WRONLY);os.dup2(fd,1);os.dup2(fd,2)\n"
    " os.execve(sys.argv[1],sys.argv[1:],os.environ)\n"
    "_,status,usage=os.wait4(pid,0)\n"
    "print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))\n"
)


def peak_rss_mb(cmd: list[str], env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", RSS_HELPER, *cmd],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if out[1] != "0":
        raise RuntimeError(f"{cmd} exited {out[1]}")
    return int(out[0]) / 1024


def concurrency_trial(base_env: dict[str, str], tmp: Path) -> tuple[int, int, int]:
    """20 processes on one expired token: (refresh requests, distinct outputs, failures)."""
    from tests.authserver import TestAuthServer, Token

    server = TestAuthServer().start()
    try:
        server.add_client("bench-client", "client-secret", "client_secret_post")
        server.knobs.refresh_delay = 0.2
        data_dir = str(tmp / "concurrent")
        rec = record("expired", f"{server.base_url}/token", time.time() - 10).evolve(
            client_id="bench-client", scopes=("offline_access",), granted_scopes=None
        )
        store = TokenStore(data_dir=data_dir)
        refresh_token = "rt-bench-" + new_token_id()
        server.tokens[refresh_token] = Token(
            "bench-client", "at-old", refresh_token, "offline_access", time.time() - 3600, 60
        )
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = base_env["DBUS_SESSION_BUS_ADDRESS"]
        store.add(
            rec,
            TokenSet(
                access_token="at-old",
                refresh_token=refresh_token,
                expires_at=time.time() - 10,
                client_secret="client-secret",
            ),
        )
        env = {**base_env, "OAUTHTOK_DATA_DIR": data_dir}
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: run([OAUTHTOK, "token", "expired"], env), range(20)))
        outputs = {r[2] for r in results}
        failures = sum(1 for r in results if r[1] != 0)
        return server.knobs.refresh_requests, len(outputs), failures
    finally:
        server.stop()


@contextmanager
def auth_server() -> Iterator[Any]:
    from tests.authserver import TestAuthServer

    server = TestAuthServer().start()
    try:
        yield server
    finally:
        server.stop()


def seed_due(server: Any, base_env: dict[str, str], data_dir: Path) -> tuple[dict[str, str], str]:
    """A token that every `token --min-valid 999999` refreshes at the Authlib server."""
    from tests.authserver import Token

    server.add_client("bench-due", "client-secret", "client_secret_post")
    refresh_token = "rt-due-" + new_token_id()
    server.tokens[refresh_token] = Token(
        "bench-due", "at-due", refresh_token, "offline_access", time.time(), 3600
    )
    rec = record("due", f"{server.base_url}/token", time.time() + 3600).evolve(
        client_id="bench-due", scopes=("offline_access",), granted_scopes=None
    )
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = base_env["DBUS_SESSION_BUS_ADDRESS"]
    TokenStore(data_dir=str(data_dir)).add(
        rec,
        TokenSet(
            access_token="at-due",
            refresh_token=refresh_token,
            expires_at=time.time() + 3600,
            client_secret="client-secret",
        ),
    )
    return {**base_env, "OAUTHTOK_DATA_DIR": str(data_dir)}, "due"


def provider_time(server: Any, rounds: int = 30) -> float:
    """The provider's own share of a refresh: a warm client's round trip to the token
    endpoint (a refused refresh costs the server the same client check and lookup)."""
    import httpx

    times = []
    with httpx.Client() as client:
        for _ in range(rounds):
            started = time.perf_counter()
            client.post(
                f"{server.base_url}/token",
                data={"grant_type": "refresh_token", "refresh_token": "unknown",
                      "client_id": "bench-due", "client_secret": "client-secret"},
            )  # fmt: skip
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# -- the file store (issue 11): `token` beside the keyring row ------------------------------------


def file_store_rows(tmp: Path, base: dict[str, str]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """A row for `oauthtok token` on the plain file store (OAUTHTOK_STORE=file), seeded with one
    token like the keyring row's."""
    from oauthtok.filestore import FileStore

    data_dir = str(tmp / "file-store")
    rec = record("bench-file", "https://login.microsoftonline.com/x/token", time.time() + 86400)
    secret = TokenSet(
        access_token=ACCESS,
        refresh_token=REFRESH,
        expires_at=time.time() + 86400,
        client_secret="client-secret",
    )
    TokenStore(secrets=FileStore(data_dir), data_dir=data_dir).add(rec, secret)
    env = {**base, "OAUTHTOK_DATA_DIR": data_dir, "OAUTHTOK_STORE": "file"}
    return {"oauthtok token (file store)": ([OAUTHTOK, "token", rec.name], env)}


def file_store_checks(med: dict[str, float]) -> list[tuple[str, bool]]:
    """The file store's `token` is as fast as the keyring's (within 10 %, or faster)."""
    on_file = med["oauthtok token (file store)"]
    on_keyring = med["oauthtok token (1 token)"]
    return [
        (
            f"token on the file store: {on_file:.1f} ms <= 1.10 x keyring {on_keyring:.1f} ms",
            on_file <= 1.10 * on_keyring,
        )
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=1000)
    args = parser.parse_args()
    # An installed oauthtok has its bytecode (pip compiles at install); the editable source
    # tree may not (PYTHONDONTWRITEBYTECODE=1), and compiling it on every run is not a cost
    # any user pays. Compile what is stale, once.
    import compileall

    compileall.compile_dir(ROOT / "src" / "oauthtok", quiet=1)

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="oauthtok-bench-")))
        one = stack.enter_context(private_secret_service())
        many = stack.enter_context(private_secret_service())
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OAUTHTOK_", "XDG_"))}
        base.update(HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "config"))
        env_one = {
            **base,
            "DBUS_SESSION_BUS_ADDRESS": one["address"],
            "OAUTHTOK_DATA_DIR": str(tmp / "one"),
        }
        env_many = {
            **base,
            "DBUS_SESSION_BUS_ADDRESS": many["address"],
            "OAUTHTOK_DATA_DIR": str(tmp / "many"),
        }
        print(f"seeding 1 and {args.tokens} tokens ...", file=sys.stderr)
        (first,) = seed(env_one, env_one["OAUTHTOK_DATA_DIR"], 1)
        last = seed(env_many, env_many["OAUTHTOK_DATA_DIR"], args.tokens)[-1]

        n = args.tokens
        server = stack.enter_context(auth_server())
        env_due, due_name = seed_due(server, env_one, tmp / "due")
        rows = {
            "python -c pass": ([sys.executable, "-c", "pass"], env_one),
            "oauthtok token (1 token)": ([OAUTHTOK, "token", first.name], env_one),
            f"oauthtok token ({n} tokens)": ([OAUTHTOK, "token", last.name], env_many),
            "keyring get (1 secret)": (
                [sys.executable, "-m", "keyring", "get", SECRET_NAMESPACE, first.id],
                env_one,
            ),
            f"oauthtok list ({n} tokens)": ([OAUTHTOK, "list"], env_many),
            f"oauthtok list --json ({n} tokens)": ([OAUTHTOK, "list", "--json"], env_many),
            f"oauthtok show ({n} tokens)": ([OAUTHTOK, "show", last.name], env_many),
            "oauthtok services": ([OAUTHTOK, "services"], env_many),
            "oauthtok show-help microsoft": ([OAUTHTOK, "show-help", "microsoft"], env_many),
            "oauthtok --version": ([OAUTHTOK, "--version"], env_many),
            "oauthtok --help": ([OAUTHTOK, "--help"], env_many),
            "oauthtok token (due: refresh)": (
                [OAUTHTOK, "token", due_name, "--min-valid", "999999"],
                env_due,
            ),
            **file_store_rows(tmp, env_one),
        }
        walls: dict[str, list[float]] = {k: [] for k in rows}
        for i in range(args.warmup + args.rounds):
            for label, (cmd, env) in rows.items():
                wall, code, out = run(cmd, env)
                valid_token = label.startswith("oauthtok token (") and "due" not in label
                if code != 0 or (valid_token and out != ACCESS + "\n"):
                    print(f"{label}: exit {code}, unexpected output", file=sys.stderr)
                    return 2
                if i >= args.warmup:
                    walls[label].append(wall)
        # peak memory in a separate, untimed pass (the helper costs start-up time)
        rss = {
            label: [peak_rss_mb(cmd, env) for _ in range(5)] for label, (cmd, env) in rows.items()
        }
        provider_ms = provider_time(server)
        print("20 concurrent processes on an expired token ...", file=sys.stderr)
        trials = [concurrency_trial(env_one, tmp / f"c{i}") for i in range(3)]

    med = {k: statistics.median(v) for k, v in walls.items()}
    token1 = med["oauthtok token (1 token)"]
    token_n = med[f"oauthtok token ({args.tokens} tokens)"]
    keyring_get = med["keyring get (1 secret)"]
    listing = med[f"oauthtok list ({args.tokens} tokens)"]
    peak = statistics.median(rss["oauthtok token (1 token)"])

    print(
        f"\noauthtok benchmark, {time.strftime('%Y-%m-%d')}, {platform.node() or 'this machine'}"
        f" ({os.cpu_count()} cores, Python {platform.python_version()}), "
        f"{args.rounds} interleaved rounds after {args.warmup} warm-ups\n"
    )
    print(f"| {'what':<32} | median ms | min ms | p90 ms | peak RSS MB |")
    print(f"|{'-' * 34}|----------:|-------:|-------:|------------:|")
    for label, values in walls.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(
            f"| {label:<32} | {med[label]:9.1f} | {min(values):6.1f} | {p90:6.1f} "
            f"| {statistics.median(rss[label]):11.1f} |"
        )

    checks = [
        (f"token, valid: {token1:.1f} ms <= 80 ms", token1 <= 80),
        (f"token / keyring get: {token1 / keyring_get:.2f} <= 0.25", token1 <= 0.25 * keyring_get),
        (f"token peak RSS: {peak:.1f} MB <= 30 MB", peak <= 30),
        (
            f"token with {args.tokens} vs 1 token: {token_n / token1:.2f} <= 1.10",
            token_n <= 1.10 * token1,
        ),
        (f"list with {args.tokens} tokens: {listing:.1f} ms <= 400 ms", listing <= 400),
        *file_store_checks(med),
    ]
    base = med["python -c pass"]

    def ratio(label: str, limit: float, extra_ms: float = 0.0) -> tuple[str, bool]:
        value = (med[label] - extra_ms) / base
        plus = f" - provider {extra_ms:.1f} ms" if extra_ms else ""
        return f"{label}{plus}: {value:.1f} x python -c pass <= {limit:g} x", value <= limit

    checks += [
        ratio("oauthtok --version", 2),
        ratio("oauthtok --help", 6),
        ratio(f"oauthtok list ({args.tokens} tokens)", 8),
        ratio(f"oauthtok list --json ({args.tokens} tokens)", 8),
        ratio(f"oauthtok show ({args.tokens} tokens)", 8),
        ratio("oauthtok services", 8),
        ratio("oauthtok show-help microsoft", 8),
        ratio("oauthtok token (1 token)", 2.5),
        ratio("oauthtok token (due: refresh)", 20, provider_ms),
    ]
    for n, (refreshes, distinct, failures) in enumerate(trials, 1):
        checks.append(
            (
                f"20 concurrent on expired token, trial {n}: {refreshes} refresh request(s), "
                f"{distinct} distinct token(s), {failures} failure(s)",
                refreshes == 1 and distinct == 1 and failures == 0,
            )
        )
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
