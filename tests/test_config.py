"""config.toml: defaults, every table and key, exit 7 with file and key, env wins, cheap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from oauthtok import config
from oauthtok.config import CommandSpec, load_config
from oauthtok.errors import CatalogError


@pytest.fixture
def cfg_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cfg"
    folder.mkdir()
    monkeypatch.setenv("OAUTHTOK_CONFIG_DIR", str(folder))
    monkeypatch.delenv("OAUTHTOK_STORE", raising=False)
    return folder


def write(cfg_dir: Path, text: str) -> Path:
    path = cfg_dir / "config.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(cfg_dir: Path) -> None:
    loaded = load_config()
    assert loaded.path == str(cfg_dir / "config.toml")
    assert not loaded.exists
    assert loaded.notify.command is None
    assert loaded.notify.every == 86400
    assert loaded.store.backend == "keyring"
    assert loaded.store.backend_from == "default"
    assert loaded.store.key_command is None


def test_config_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert config.config_path() == str(tmp_path / "xdg" / "oauthtok" / "config.toml")


def test_every_key(cfg_dir: Path) -> None:
    write(
        cfg_dir,
        """
[notify]
command = "notify-send oauthtok \\"$OAUTHTOK_REASON\\""
every = "12h"
[store]
backend = "file"
key_command = ["pass", "show", "oauthtok/key"]
""",
    )
    loaded = load_config()
    assert loaded.exists
    assert loaded.notify.command == CommandSpec(
        ('notify-send oauthtok "$OAUTHTOK_REASON"',), shell=True
    )
    assert loaded.notify.command.to_argv()[:2] == ["/bin/sh", "-c"]
    assert loaded.notify.every == 43200
    assert loaded.store.backend == "file"
    assert loaded.store.backend_from == str(cfg_dir / "config.toml")
    assert loaded.store.key_command == CommandSpec(("pass", "show", "oauthtok/key"))
    assert loaded.store.key_command.to_argv() == ["pass", "show", "oauthtok/key"]
    assert loaded.store.key_command.display() == "pass show oauthtok/key"


def test_environment_wins(cfg_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(cfg_dir, '[store]\nbackend = "file"\n')
    monkeypatch.setenv("OAUTHTOK_STORE", "keyring")
    loaded = load_config()
    assert (loaded.store.backend, loaded.store.backend_from) == ("keyring", "OAUTHTOK_STORE")
    monkeypatch.setenv("OAUTHTOK_STORE", "file")
    (cfg_dir / "config.toml").unlink()
    assert load_config().store.backend == "file"
    monkeypatch.setenv("OAUTHTOK_STORE", "sqlite")
    with pytest.raises(CatalogError, match="OAUTHTOK_STORE: 'sqlite' is not a secret store"):
        load_config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[notfy]\n", r"unknown table \[notfy\] \(did you mean 'notify'\?\)"),
        ("[store]\nbakend = 'file'\n", r"unknown key store.bakend \(did you mean 'backend'\?\)"),
        ("[notify]\nxyzzy = 1\n", r"unknown key notify.xyzzy \(known: command, every\)"),
        ("notify = 3\n", r"notify must be a table"),
        ("[store]\nbackend = 'files'\n", r"store.backend must be one of 'keyring', 'file'"),
        ("[store]\nbackend = 1\n", r"store.backend must be one of"),
        ("[notify]\ncommand = 42\n", r"notify.command must be a string .* or a non-empty list"),
        ("[notify]\ncommand = []\n", r"notify.command must be a string"),
        ("[notify]\ncommand = ['a', 1]\n", r"notify.command must be a string"),
        ("[notify]\ncommand = ['']\n", r"notify.command: the program \(first item\) is empty"),
        ("[notify]\ncommand = '  '\n", r"notify.command is empty"),
        ("[store]\nkey_command = {a = 1}\n", r"store.key_command must be a string"),
        ("[notify]\nevery = 86400\n", r"notify.every must be a duration string"),
        ("[notify]\nevery = 'daily'\n", r"notify.every: 'daily' is not a duration"),
        ("[notify\n", r"invalid TOML"),
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", r"(invalid TOML|nested too deeply)"),
        ("a = " + "{b=" * 3000 + "1" + "}" * 3000 + "\n", r"(invalid TOML|nested too deeply)"),
        ("x = '" + "a" * 70000 + "'\n", r"larger than 64 KiB"),
    ],
)
def test_invalid_is_exit_7_with_file_and_key(cfg_dir: Path, text: str, message: str) -> None:
    path = write(cfg_dir, text)
    with pytest.raises(CatalogError, match=message) as info:
        load_config()
    assert info.value.exit_code == 7
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_not_utf8_and_a_folder(cfg_dir: Path) -> None:
    (cfg_dir / "config.toml").write_bytes(b"[notify]\ncommand = '\xff'\n")
    with pytest.raises(CatalogError, match="not UTF-8"):
        load_config()
    (cfg_dir / "config.toml").unlink()
    (cfg_dir / "config.toml").mkdir()
    with pytest.raises(CatalogError, match="is a folder"):
        load_config()


def test_deeply_nested_file_ends_in_exit_7_in_a_real_process(cfg_dir: Path) -> None:
    """No traceback: the program's own error path prints one line (through the CLI's handler
    once wired; here through a tiny runner of load_config)."""
    write(cfg_dir, "a = " + "[" * 60000 + "]" * 60000 + "\n")
    code = (
        "import sys\nfrom oauthtok.config import load_config\nfrom oauthtok.errors import "
        "OauthtokError\ntry:\n    load_config()\nexcept OauthtokError as e:\n"
        "    print(e, file=sys.stderr); sys.exit(e.exit_code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 7, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1


def test_importing_is_cheap() -> None:
    """The fast path imports config: no dataclasses, tomllib or subprocess until needed."""
    code = (
        "import sys, oauthtok.config as c, oauthtok.sessionbus, oauthtok.filestore\n"
        "heavy = {'dataclasses', 'tomllib', 'subprocess', 'filelock', 'cryptography', 'difflib'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [sys.executable, "-S", "-c", "import sys; sys.path[:0] = " + repr(sys.path) + "\n" + code],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("chosen", ["", " ", *config.BACKENDS, " file ", "File", "nope"])
def test_the_fast_paths_store_choice_is_the_configs(
    chosen: str, cfg_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a config file the `token` fast path reads OAUTHTOK_STORE itself (importing
    `config` costs more than the rest of the run): it must choose as `load_config` does."""
    from oauthtok import fastpath

    monkeypatch.setenv(config.STORE_ENV, chosen)
    try:
        expected: object = (load_config().store.backend, False)
    except CatalogError as exc:
        expected = exc
    try:
        found: object = fastpath._chosen_store()
    except CatalogError as exc:
        found = exc
    if isinstance(expected, CatalogError):
        assert isinstance(found, CatalogError) and str(found) == str(expected)
    else:
        assert found == expected
