"""The Microsoft 365 admin kit: national clouds, the admin-consent link and its text, and
the catalog's `microsoft` service agreeing with the cloud table."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from oauthtok import m365
from oauthtok.catalog import get_service, resolve_endpoints
from oauthtok.errors import UsageError

SCOPES = ("offline_access", "https://outlook.office.com/IMAP.AccessAsUser.All")


def test_admin_consent_url_has_the_documented_shape() -> None:
    url = m365.admin_consent_url(
        client_id="00001111-aaaa-2222-bbbb-3333cccc4444",
        tenant="contoso.onmicrosoft.com",
        scopes=SCOPES,
        redirect_uri="http://localhost",
        state="12345",
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "login.microsoftonline.com",
        "/contoso.onmicrosoft.com/v2.0/adminconsent",
    )
    assert parse_qs(parts.query) == {
        "client_id": ["00001111-aaaa-2222-bbbb-3333cccc4444"],
        "scope": [" ".join(SCOPES)],
        "redirect_uri": ["http://localhost"],
        "state": ["12345"],
    }
    assert "+" not in parts.query  # spaces as %20, as Microsoft's example


@pytest.mark.parametrize(
    ("cloud", "host"),
    [
        ("global", "login.microsoftonline.com"),
        ("usgov", "login.microsoftonline.us"),
        ("china", "login.partner.microsoftonline.cn"),
    ],
)
def test_clouds_choose_the_authority(cloud: str, host: str) -> None:
    url = m365.admin_consent_url(
        client_id="c",
        tenant="organizations",
        scopes=["openid"],
        redirect_uri="http://localhost",
        cloud_name=cloud,
    )
    assert urlsplit(url).netloc == host
    assert parse_qs(urlsplit(url).query)["state"][0]  # random when not given


@pytest.mark.parametrize("tenant", ["common", "consumers", "", "a/b"])
def test_admin_consent_needs_an_organization(tenant: str) -> None:
    with pytest.raises(UsageError, match="tenant"):
        m365.admin_consent_url(
            client_id="c", tenant=tenant, scopes=SCOPES, redirect_uri="http://localhost"
        )


def test_admin_consent_needs_scopes_and_client() -> None:
    with pytest.raises(UsageError, match="--scopes"):
        m365.admin_consent_url(client_id="c", tenant="t", scopes=[], redirect_uri="r")
    with pytest.raises(UsageError, match="--client-id"):
        m365.admin_consent_url(client_id=" ", tenant="t", scopes=SCOPES, redirect_uri="r")


def test_consent_text_lists_each_permission_with_what_it_allows() -> None:
    ms = get_service("microsoft")
    scopes = [*SCOPES, "https://outlook.office365.com/.default", "Made.Up"]
    text = m365.consent_text(
        url="https://link",
        client_id="c-1",
        tenant="contoso.com",
        scopes=scopes,
        descriptions=ms.scopes,
    )
    lines = text.splitlines()
    assert lines[0] == "https://link"
    assert (
        "  - https://outlook.office.com/IMAP.AccessAsUser.All: Outlook: read and write the "
        "mailbox over IMAP" in lines
    )
    assert (
        "  - offline_access: Keep access: lets oauthtok refresh without asking you again" in lines
    )
    assert "  - Made.Up: not in oauthtok catalog; check the name" in lines
    assert "New-ServicePrincipal" in text  # .default: the Exchange steps
    assert "c-1" in text and "contoso.com" in text


def test_apply_cloud_fills_the_authority() -> None:
    declared = get_service("microsoft").params
    assert m365.apply_cloud(declared, {"tenant": "t", "cloud": "usgov"}) == {
        "tenant": "t",
        "authority": "login.microsoftonline.us",
    }
    assert m365.apply_cloud(declared, {"tenant": "t"}) == {"tenant": "t"}
    with pytest.raises(UsageError, match="unknown cloud"):
        m365.apply_cloud(declared, {"cloud": "germany"})
    with pytest.raises(UsageError, match="contradicts"):
        m365.apply_cloud(declared, {"cloud": "china", "authority": "login.microsoftonline.com"})
    with pytest.raises(UsageError, match="no national clouds"):
        m365.apply_cloud(get_service("google").params, {"cloud": "usgov"})


@pytest.mark.parametrize("cloud", list(m365.CLOUDS))
def test_the_catalog_endpoints_follow_the_cloud(cloud: str) -> None:
    ms = get_service("microsoft")
    params = m365.apply_cloud(ms.params, {"tenant": "contoso.com", "cloud": cloud})
    ends = resolve_endpoints(ms, params)
    host = m365.CLOUDS[cloud].authority
    assert ends.token_url == f"https://{host}/contoso.com/oauth2/v2.0/token"
    assert ends.authorize_url == f"https://{host}/contoso.com/oauth2/v2.0/authorize"
    assert m365.cloud_of_authority(ends.token_url) == m365.CLOUDS[cloud]
    # the default scopes, moved to the cloud's hosts, are all in the catalog
    for scope in m365.translate_scopes(ms.default_scopes, cloud):
        assert scope in ms.scopes, scope


def test_translate_scopes() -> None:
    scopes = (
        "openid",
        "https://graph.microsoft.com/Mail.Read",
        "https://outlook.office.com/SMTP.Send",
        "https://outlook.office365.com/.default",
    )
    assert m365.translate_scopes(scopes, "china") == (
        "openid",
        "https://microsoftgraph.chinacloudapi.cn/Mail.Read",
        "https://partner.outlook.cn/SMTP.Send",
        "https://partner.outlook.cn/.default",
    )
    assert m365.translate_scopes(scopes, "global") == scopes


def test_the_catalog_knows_each_clouds_mail_scopes() -> None:
    ms = get_service("microsoft")
    for c in m365.CLOUDS.values():
        for permission in (
            "IMAP.AccessAsUser.All",
            "POP.AccessAsUser.All",
            "SMTP.Send",
            ".default",
        ):
            assert f"{c.outlook[-1]}/{permission}" in ms.scopes, (c.name, permission)
        assert f"{c.graph}/.default" in ms.scopes


def test_audience_sets() -> None:
    assert m365.GRAPH_APP_ID in m365.graph_audiences()
    assert "https://outlook.office365.us" in m365.outlook_audiences()
    assert not m365.graph_audiences() & m365.outlook_audiences()
