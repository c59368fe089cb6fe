"""The service catalog: bundled presets, layering, validation (exit 7), placeholders."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oauthtok.catalog import load_catalog, resolve_endpoints, url_problem
from oauthtok.cli.app import app
from oauthtok.errors import CatalogError, UsageError

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def use_catalog(monkeypatch: pytest.MonkeyPatch, *files: Path) -> None:
    import os

    monkeypatch.setenv("OAUTHTOK_SERVICES", os.pathsep.join(map(str, files)))


def test_bundled_presets() -> None:
    catalog = load_catalog()
    assert {"microsoft", "google", "github"} <= set(catalog)
    ms = catalog["microsoft"]
    for scope in (
        "offline_access",
        "openid",
        "profile",
        "email",
        "https://graph.microsoft.com/User.Read",
        "https://graph.microsoft.com/User.Read.All",
        "https://graph.microsoft.com/Directory.Read.All",
        "https://graph.microsoft.com/Mail.Read",
        "https://graph.microsoft.com/Mail.Send",
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/POP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
    ):
        assert scope in ms.scopes, scope
    assert (
        ms.params == {"tenant": "common", "authority": "login.microsoftonline.com"}
        and ms.refresh_scope == "offline_access"
    )
    assert "http://localhost" in ms.help and "AADSTS50011" in ms.help
    google = catalog["google"]
    assert "https://mail.google.com/" in google.scopes
    assert google.authorize_params["access_type"] == "offline"
    # the lives of their grants (lifecycle): Microsoft's idle limit, Google's in Testing only
    assert ms.refresh_token_idle_days == 90 and ms.refresh_token_max_days is None
    assert google.refresh_token_max_days == 7 and google.params == {"testing": "no"}
    github = catalog["github"]
    assert {"repo", "read:org", "user", "workflow"} <= set(github.scopes)
    assert "not expire" in github.help
    assert all(s.origin == "bundled" for s in catalog.values())


def test_microsoft_tenant_placeholder() -> None:
    ms = load_catalog()["microsoft"]
    assert "/common/" in resolve_endpoints(ms, {}).token_url
    ends = resolve_endpoints(ms, {"tenant": "contoso.onmicrosoft.com"})
    assert ends.authorize_url == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
    )
    with pytest.raises(UsageError, match="no parameter 'tennant'"):
        resolve_endpoints(ms, {"tennant": "x"})


def test_layers_override_per_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = write(
        tmp_path / "xdg_config_home" / "oauthtok" / "services.toml",
        '[services.github]\ntitle = "GitHub Enterprise"\n'
        'authorize_url = "https://ghe.example.com/login/oauth/authorize"\n',
    )
    extra = write(
        tmp_path / "extra.toml",
        '[services.github]\ntitle = "Our GHE"\n'
        '[services.github.scopes]\n"admin:org" = "Manage orgs"\n'
        '[services.local]\ntitle = "Local"\ntoken_url = "http://127.0.0.1:9/token"\n'
        'authorize_url = "http://localhost:9/auth"\n',
    )
    use_catalog(monkeypatch, extra)
    catalog = load_catalog()
    gh = catalog["github"]
    assert gh.title == "Our GHE" and gh.origin == str(extra)
    assert gh.authorize_url == "https://ghe.example.com/login/oauth/authorize"  # from user file
    assert "admin:org" in gh.scopes and "repo" in gh.scopes  # tables merge
    assert catalog["local"].origin == str(extra)
    result = runner.invoke(app, ["services", "--json"])
    assert result.exit_code == 0
    data = {s["name"]: s for s in json.loads(result.stdout)}
    assert data["github"]["origin"] == str(extra) and data["google"]["origin"] == "bundled"
    assert user.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[services.x\ntitle='a'", "invalid TOML"),
        (
            '[services.x]\ntitle = "X"\ntoken_url = "https://a/t"\nautorize_url = "https://a"\n',
            "unknown key 'autorize_url' (did you mean 'authorize_url'?)",
        ),
        ('[services.x]\ntoken_url = "https://a/t"\n', "service 'x': missing key 'title'"),
        ('[services.x]\ntitle = "X"\n', "missing key 'token_url'"),
        (
            '[services.x]\ntitle = "X"\ntoken_url = "http://idp.example.com/token"\n',
            "must use https",
        ),
        (
            '[services.x]\ntitle = "X"\ntoken_url = "https://a/{realm}/token"\n',
            "unknown placeholder {realm}",
        ),
        (
            '[services.x]\ntitle = "X"\ntoken_url = "https://a/t"\ntoken_auth = "jwt"\n',
            "token_auth must be one of",
        ),
        (
            '[services.x]\ntitle = "X"\ntoken_url = "https://a/t"\nredirect_uri = "https://a/cb"\n',
            "loopback redirect",
        ),
        ('[services.x]\ntitle = 3\ntoken_url = "https://a/t"\n', "'title' must be a string"),
        ("[other]\nx = 1\n", "unknown top-level key 'other'"),
        (
            '[services.x]\ntitle = "X"\ntoken_url = "https://a/t"\n'
            'refresh_token_idle_days = "90"\n',
            "'refresh_token_idle_days' must be a number of days",
        ),
        (
            '[services.x]\ntitle = "X"\ntoken_url = "https://a/t"\nrefresh_token_max_days = 0\n',
            "'refresh_token_max_days' must be a number of days between 0 and 3650, not 0",
        ),
    ],
)
def test_invalid_catalog_exits_7(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    bad = write(tmp_path / "bad.toml", text)
    use_catalog(monkeypatch, bad)
    with pytest.raises(CatalogError, match=re.escape(message)):
        load_catalog()
    result = runner.invoke(app, ["services"])
    assert result.exit_code == 7
    assert result.stderr.startswith("oauthtok: error: ") and str(bad) in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_toml_error_names_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_catalog(monkeypatch, write(tmp_path / "bad.toml", '[services.x]\ntitle = "X"\nfoo ==\n'))
    with pytest.raises(CatalogError, match="line 3"):
        load_catalog()


def test_missing_override_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_catalog(monkeypatch, tmp_path / "nope.toml")
    assert runner.invoke(app, ["services"]).exit_code == 7


def test_url_rules() -> None:
    assert url_problem("https://idp.example.com/token") is None
    assert url_problem("http://127.0.0.1:8080/token") is None
    assert url_problem("http://localhost/token") is None
    assert url_problem("http://[::1]:9/token") is None
    assert url_problem("http://idp.example.com/token")
    assert url_problem("ftp://idp.example.com/token")
    assert url_problem("/token")


def test_placeholder_values_are_rechecked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_catalog(
        monkeypatch,
        write(
            tmp_path / "p.toml",
            '[services.p]\ntitle = "P"\ntoken_url = "{base}/token"\n'
            'params = { base = "https://idp.example.com" }\n',
        ),
    )
    service = load_catalog()["p"]
    with pytest.raises(UsageError, match="https"):
        resolve_endpoints(service, {"base": "http://evil.example.com"})


@pytest.mark.slow
def build_wheel(dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wheel `pip install .` builds: by the project's build backend (hatchling, the PEP 517
    hook pip calls) in this process when it is installed here and new enough, else by
    `pip wheel` (which first installs the backend into an isolated environment: seconds)."""
    try:
        from importlib.metadata import version

        from packaging.version import Version

        usable = Version(version("hatchling")) >= Version("1.24")  # build-system.requires
    except ImportError:  # packaging or hatchling missing
        usable = False
    if usable:
        from hatchling.build import build_wheel as backend

        monkeypatch.chdir(ROOT)  # a PEP 517 hook runs in the project's folder
        backend(str(dist))
        return
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr


def test_wheel_ships_the_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install .` puts services.toml inside the package; `oauthtok services` finds it."""
    dist = tmp_path / "dist"
    build_wheel(dist, monkeypatch)
    (wheel,) = dist.glob("oauthtok-*.whl")
    assert "oauthtok/services.toml" in zipfile.ZipFile(wheel).namelist()
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import oauthtok.catalog as s, sys; print(s.bundled_catalog_path());"
            "sys.argv=['oauthtok','services']; from oauthtok.launcher import main; main()",
        ],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env={**__import__("os").environ, "PYTHONPATH": str(target)},
    )
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout.splitlines()[0]
    assert "microsoft" in result.stdout and "bundled" in result.stdout


def test_a_deeply_nested_or_huge_catalog_is_exit_7(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("[services.x]\ntitle = 'x'\nscopes = " + "[" * 50_000 + "]" * 50_000 + "\n")
    monkeypatch.setenv("OAUTHTOK_SERVICES", str(deep))
    with pytest.raises(CatalogError, match="nested too deeply"):
        load_catalog()
    huge = tmp_path / "huge.toml"
    huge.write_text("# " + "x" * 1_100_000 + "\n")
    monkeypatch.setenv("OAUTHTOK_SERVICES", str(huge))
    with pytest.raises(CatalogError, match="over 1000 kB"):
        load_catalog()
