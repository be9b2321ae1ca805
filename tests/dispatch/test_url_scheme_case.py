"""A URL's scheme written in capitals (``HTTPS://``): schemes are case-insensitive (RFC 3986,
3.1), so such a url is taken as the lower-case one, where check refused it as not https://."""

from __future__ import annotations

from pathlib import Path

from hub.config import load
from hub.config.models import FacebookOptions, HubSpotOptions
from hub.store.models import State
from tests.dispatch.support import (
    all_in,
    enqueue,
    forms_config,
    leads,
    opened_store,
    running,
    sandbox_get,
    sandbox_server,
    wait_for,
)


async def test_a_target_url_with_a_capital_scheme_is_sent_to(tmp_path: Path) -> None:
    """``url: HTTP://127.0.0.1:PORT`` loads (check said it must start with https://) and the
    dispatcher delivers through it to a real sandbox over HTTP."""
    with sandbox_server() as (sandbox_url, _):
        written = sandbox_url.replace("http://", "HTTP://")
        config = forms_config(tmp_path, written)
        assert config.targets["default"].url == sandbox_url
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", leads("c", 2))
            async with running(config, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
        stored = sorted(
            lead["EmailAddress"] for lead in sandbox_get(sandbox_url, "/_sandbox/leads")
        )
    assert stored == ["c0@example.com", "c1@example.com"]


def test_api_urls_with_a_capital_scheme_are_taken(tmp_path: Path) -> None:
    """A lead read's API url (``graph_url``, ``api_url``) is taken lower-cased the same way;
    HubSpot's ``webhook_url`` is taken as written (it is signed as HubSpot calls it)."""
    (tmp_path / "a.yaml").write_text(
        "kind: endpoint\nname: fb\nsource: facebook\napp_secret: ${S}\nverify_token: ${S}\n"
        "page_access_token: ${S}\ngraph_url: HTTPS://graph.example.com/v19.0/\n---\n"
        "kind: endpoint\nname: hs\nsource: hubspot\nclient_secret: ${S}\naccess_token: ${S}\n"
        "webhook_url: HTTPS://hub.example.com/hooks/hs\napi_url: Https://api.example.com\n---\n"
        "name: fb\nendpoint: fb\nfields: {EmailAddress: $.email}\n---\n"
        "name: hs\nendpoint: hs\nfields: {EmailAddress: $.email}\n"
    )
    config = load(tmp_path, {"S": "s3cret"})
    facebook = config.endpoints["fb"].options
    hubspot = config.endpoints["hs"].options
    assert isinstance(facebook, FacebookOptions) and isinstance(hubspot, HubSpotOptions)
    assert facebook.graph_url == "https://graph.example.com/v19.0"
    assert hubspot.api_url == "https://api.example.com"
    assert hubspot.webhook_url == "HTTPS://hub.example.com/hooks/hs"
