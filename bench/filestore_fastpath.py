"""How fast the `token` fast path can read a secret: the file store beside the keyring.

Until the CLI routes `token` to the file store, this measures the fast path's own steps in a
fresh process each round: start Python, decide the store (`config.store_backend_fast`), find
the name, read the secret (`filestore.read_plain`, or the Secret Service through
`secret_service.read_secret`), print the token. Run from the repository root:

    .venv/bin/python bench/filestore_fastpath.py [--rounds 30]

A benchmark, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from oauthtok import layout  # noqa: E402
from oauthtok.filestore import FileStore  # noqa: E402
from oauthtok.secretstore import SecretStore  # noqa: E402
from tests.secret_service_daemon import private_secret_service  # noqa: E402

TOKEN_ID = "0123456789abcdef0123456789abcdef"
SECRET = json.dumps({"access_token": "eyJ0" + "x" * 2400, "expires_at": time.time() + 86400})

READER = """
import json, os, sys
from oauthtok import config, layout, paths
backend = config.store_backend_fast()
data_dir = paths.data_dir()
_, token_id = layout.lookup(layout.read_names(data_dir), "bench")
if backend == "file":
    from oauthtok.filestore import read_plain
    raw = read_plain(data_dir, token_id)
else:
    from oauthtok.secret_service import read_secret
    raw = read_secret(layout.KEYRING_SERVICE, token_id)
sys.stdout.write(json.loads(raw)["access_token"][:4] + "\\n")
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, private_secret_service() as service:
        data = Path(tmp) / "data"
        data.mkdir(mode=0o700)
        (data / layout.NAMES_FILE).write_text(
            json.dumps({"version": 1, "names": {"bench": TOKEN_ID}})
        )
        FileStore(str(data)).set(TOKEN_ID, SECRET)
        env = {
            **os.environ,
            "DBUS_SESSION_BUS_ADDRESS": service["address"],
            "OAUTHTOK_DATA_DIR": str(data),
            "OAUTHTOK_CONFIG_DIR": str(Path(tmp) / "config"),
            "PYTHONPATH": str(ROOT / "src"),
        }
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = service["address"]
        SecretStore().set(TOKEN_ID, SECRET)
        rows = {
            "keyring": {**env, "OAUTHTOK_STORE": "keyring"},
            "file": {**env, "OAUTHTOK_STORE": "file"},
            "python -c pass": env,
        }
        times: dict[str, list[float]] = {k: [] for k in rows}
        for _ in range(args.rounds):
            for name, row_env in rows.items():
                code = "pass" if name == "python -c pass" else READER
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-c", code],
                    env=row_env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                times[name].append(time.perf_counter() - started)
                if name != "python -c pass" and done.stdout.strip() != "eyJ0":
                    print(name, "failed:", done.stderr[-500:])
                    return 1
        for name, values in times.items():
            print(f"{name:16} median {statistics.median(values) * 1000:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
