"""A lead read's API url (``graph_url``, ``api_url``) with a query, a fragment or credentials.

The reads add the lead's path after the url: behind a ``?`` it became part of the query
(HubSpot's old ``?hapikey=`` keys, a Graph Explorer URL with its ``access_token``), behind a
``#`` it was never sent, so every read asked for the url itself, and ``check`` said ok. A
user name or password, or a key in the query, would be shown wherever the url is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, load

#: Each lead-reading source: its document (the url on line 5), and the option holding its token.
SOURCES = {
    "facebook": (
        "kind: endpoint\nname: e\nsource: facebook\napp_secret: ${S}\ngraph_url: {url}\n"
        "page_access_token: ${T}\nverify_token: ${T}\n",
        "page_access_token",
    ),
    "linkedin": (
        "kind: endpoint\nname: e\nsource: linkedin\nclient_secret: ${S}\napi_url: {url}\n"
        "access_token: ${T}\n",
        "access_token",
    ),
    "hubspot": (
        "kind: endpoint\nname: e\nsource: hubspot\nclient_secret: ${S}\napi_url: {url}\n"
        "access_token: ${T}\nwebhook_url: https://hub.example.com/hooks/e\n",
        "access_token",
    ),
}
MAPPING = "---\nkind: mapping\nname: m\nendpoint: e\nfields:\n  EmailAddress: $.email\n"
ENV = {"S": "app-secret-1", "T": "read-token-2"}
#: A url as written, and what the refusal says of it.
BAD = [
    ("https://api.example.com/v1?hapikey=KEY-77c1", "has a query"),
    ("https://api.example.com/v1/?access_token=KEY-77c1", "has a query"),
    ("https://api.example.com/v1#KEY-77c1", "has a fragment"),
    ("https://me:KEY-77c1@api.example.com/v1", "holds a user name or password"),
]


def _write(directory: Path, source: str, url: str) -> Path:
    path = directory / "e.yaml"
    path.write_text(SOURCES[source][0].replace("{url}", url) + MAPPING)
    return path


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize(("url", "said"), BAD, ids=["query", "slash-query", "fragment", "user"])
def test_an_api_url_with_a_query_fragment_or_password_is_refused(
    tmp_path: Path, source: str, url: str, said: str
) -> None:
    """An error at the url's line naming the option, what is wrong and where the token goes,
    never showing what the query, fragment or password holds."""
    path = _write(tmp_path, source, url)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, ENV)
    (issue,) = info.value.issues
    key = "graph_url" if source == "facebook" else "api_url"
    assert issue.startswith(f"{path}:5: '{key}' 'https://"), issue
    assert said in issue
    assert f"the API's token goes in '{SOURCES[source][1]}'" in issue
    assert "KEY-77c1" not in issue


@pytest.mark.parametrize("source", list(SOURCES))
def test_an_api_url_without_them_loads(tmp_path: Path, source: str) -> None:
    """A base url alone (a path and a trailing slash are fine) loads, as before."""
    _write(tmp_path, source, "https://api.example.com/v1/")
    options = load(tmp_path, ENV).endpoints["e"].options
    url = getattr(options, "graph_url" if source == "facebook" else "api_url")
    assert url == "https://api.example.com/v1"


@pytest.mark.parametrize("source", list(SOURCES))
def test_a_plain_http_api_url_off_this_machine_is_warned_of(tmp_path: Path, source: str) -> None:
    """``http://`` to another host sends the read's token in the clear: a warning at the
    url's line naming the token's option (it loads: a gateway may be meant). A local test
    double (``http://127.0.0.1``, ``http://localhost``, or this machine written another way:
    ``0x7f.0.0.1``, ``[::ffff:127.0.0.1]``, warned of before) is not warned of."""
    path = _write(tmp_path, source, "http://api.example.com/v1")
    config = load(tmp_path, ENV)
    (warning,) = config.warnings
    key = "graph_url" if source == "facebook" else "api_url"
    assert warning.startswith(f"{path}:5: '{key}' 'http://api.example.com/v1' is http://")
    assert f"the token every read sends ('{SOURCES[source][1]}')" in warning
    local_urls = (
        "127.0.0.1",
        "localhost",
        "127.0.0.2",
        "0x7f.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::1]",
    )
    for local in (f"http://{host}:9/v1" for host in local_urls):
        _write(tmp_path, source, local)
        assert load(tmp_path, ENV).warnings == (), local


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize(
    ("host", "meant"),
    [("127.1", ", here 127.0.0.1"), ("2130706433", ", here 127.0.0.1"), ("10.0.0.1.", "")],
)
def test_an_api_url_whose_host_the_client_refuses_is_refused(
    tmp_path: Path, source: str, host: str, meant: str
) -> None:
    """An IPv4 address written short, as one number or with a trailing dot loaded (``127.1``
    even as this machine, not warned of), but the hub's HTTP client (aiohttp) refuses such a
    host: every read failed as a network error ("is not a canonical IPv4 address"). An error
    at the url's line, saying how to write it."""
    path = _write(tmp_path, source, f"http://{host}:9/v1")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, ENV)
    (issue,) = info.value.issues
    key = "graph_url" if source == "facebook" else "api_url"
    assert issue == (
        f"{path}:5: '{key}' 'http://{host}:9/v1' names the host {host!r}, which the hub's "
        "HTTP client does not call: it takes an IPv4 address only as four numbers from 0 to "
        f"255 without leading zeros{meant}, so no lead could be read"
    )
