"""Loading valid configuration: option classes, variables, targets, warnings, the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, load
from hub.config.endpoints import SandboxSettingError, sandbox_target
from hub.config.models import (
    DEFAULT_GRAPH_FIELDS,
    FacebookOptions,
    GoogleOptions,
    HmacOptions,
    HubSpotOptions,
    NoneOptions,
    RetrySchedule,
    StandardOptions,
    TokenOptions,
    TypeformOptions,
)
from hub.dispatch.transport import make_http_client
from hub.mapping import CompiledMapping
from hub.secrets import Secret
from hub.units import RateLimit
from tests.sandbox.helpers import CAPTURE, serve_sandbox

ENDPOINTS = """\
kind: endpoint
name: facebook
source: facebook
app_secret: ${FB_APP_SECRET}
verify_token: ${FB_VERIFY_TOKEN}
page_access_token: ${FB_PAGE_TOKEN}
graph_url: ${FB_GRAPH_URL:http://127.0.0.1:9/v21.0/}
allow_sha1: ${FB_ALLOW_SHA1:true}
---
kind: endpoint
name: google
source: google
key: ${GOOGLE_KEY}
max_body: 64KiB
dedupe: $.lead_id
---
kind: endpoint
name: typeform
source: typeform
secret: ${TYPEFORM_SECRET}
---
kind: endpoint
name: webflow
source: hmac
header: x-webflow-signature
secret: ${WEBFLOW_SECRET}
signed: "{timestamp}:{body}"
timestamp_header: x-webflow-timestamp
timestamp_unit: ms
tolerance: 5m
---
kind: endpoint
name: zapier
source: token
token: ${ZAPIER_TOKEN}
header: X-Api-Key
---
kind: endpoint
name: make
source: standard
secret: ${MAKE_SECRET}
---
kind: endpoint
name: lan
source: none
"""

TARGETS = """\
kind: target
name: crm
url: https://api-in21.leadsquared.com/
access_key: ${LSQ_ACCESS_KEY}
secret_key: ${LSQ_SECRET_KEY}
rate_limit: "off"
timeout: 30s
retry: {initial: 1s, max_interval: 5m, give_up_after: 1h, multiplier: 3}
"""

MAPPINGS = """\
name: fb
endpoint: facebook
target: crm
fields:
  EmailAddress: $.email
---
name: google-a
endpoint: google
match: {$.form_id: 1}
fields:
  EmailAddress: $.email
---
name: google-b
endpoint: google
match:
  - {$.form_id: 2}
  - {$.form_id: [3, 4]}
fields:
  EmailAddress: $.email
"""

ENV = {
    "FB_APP_SECRET": "fb_test_app_secret_0123456789abcdef",
    "FB_VERIFY_TOKEN": "hub-verify-token-example",
    "FB_PAGE_TOKEN": "page-token",
    "GOOGLE_KEY": "gk_test_7c1e2b",
    "TYPEFORM_SECRET": "tf_test_secret_9f8e7d",
    "WEBFLOW_SECRET": "wf",
    "ZAPIER_TOKEN": "zt",
    "MAKE_SECRET": "whsec_c3RhbmRhcmQtd2ViaG9va3MtdGVzdC1rZXktMzJieXQ=",
    "LSQ_ACCESS_KEY": "u$r-access",
    "LSQ_SECRET_KEY": "secret",
}


@pytest.fixture(name="config_dir")
def _config_dir(tmp_path: Path) -> Path:
    (tmp_path / "endpoints.yaml").write_text(ENDPOINTS)
    (tmp_path / "targets.yml").write_text(TARGETS)
    (tmp_path / "mappings.yaml").write_text(MAPPINGS)
    return tmp_path


def test_each_source_gives_its_option_class(config_dir: Path) -> None:
    """Endpoint options become the typed classes of hub.config.models, secrets as Secret."""
    config = load(config_dir, ENV)
    fb = config.endpoints["facebook"].options
    assert fb == FacebookOptions(
        app_secret=Secret(ENV["FB_APP_SECRET"]),
        verify_token=Secret(ENV["FB_VERIFY_TOKEN"]),
        page_access_token=Secret("page-token"),
        graph_url="http://127.0.0.1:9/v21.0",
        fields=DEFAULT_GRAPH_FIELDS,
        allow_sha1=True,
    )
    assert config.endpoints["google"].options == GoogleOptions(key=Secret("gk_test_7c1e2b"))
    assert config.endpoints["typeform"].options == TypeformOptions(
        secret=Secret(ENV["TYPEFORM_SECRET"])
    )
    assert config.endpoints["webflow"].options == HmacOptions(
        header="x-webflow-signature",
        secret=Secret("wf"),
        signed="{timestamp}:{body}",
        timestamp_header="x-webflow-timestamp",
        timestamp_unit="ms",
        tolerance=300.0,
    )
    assert config.endpoints["zapier"].options == TokenOptions(
        token=Secret("zt"), header="X-Api-Key"
    )
    assert config.endpoints["make"].options == StandardOptions(secret=Secret(ENV["MAKE_SECRET"]))
    assert config.endpoints["lan"].options == NoneOptions()


def test_common_endpoint_keys(config_dir: Path) -> None:
    """max_body is parsed as a size and dedupe is a compiled JSONPath with text and values."""
    google = load(config_dir, ENV).endpoints["google"]
    assert google.max_body == 64 * 1024
    assert google.dedupe is not None and google.dedupe.text == "$.lead_id"
    assert google.dedupe.values({"lead_id": "L1"}) == ["L1"]
    assert google.origin is not None and google.origin.line == 10


def test_target_keys(config_dir: Path) -> None:
    """A target's url, keys, rate limit 'off', timeout and retry schedule are read."""
    crm = load(config_dir, ENV).targets["crm"]
    assert crm.url == "https://api-in21.leadsquared.com"
    assert crm.access_key == Secret("u$r-access") and crm.secret_key == Secret("secret")
    assert crm.rate_limit is None
    assert crm.timeout == 30.0
    assert crm.retry == RetrySchedule(initial=1, max_interval=300, give_up_after=3600, multiplier=3)
    assert not crm.sandbox


def test_default_target_is_the_embedded_sandbox(config_dir: Path) -> None:
    """Without a target named default, default is the sandbox with keys from the environment."""
    env = {**ENV, "LEADHUB_SANDBOX_ACCESS_KEY": "ak", "LEADHUB_SANDBOX_RATE_LIMIT": "10/1s"}
    default = load(config_dir, env).targets["default"]
    assert default.sandbox and default.url == ""
    assert default.access_key == Secret("ak") and default.secret_key == Secret("sandbox")
    assert default.rate_limit == RateLimit(calls=10, window=1.0)
    assert load(config_dir, ENV).targets["default"].rate_limit == RateLimit(25, 5.0)


@pytest.mark.parametrize("variable", ["LEADHUB_SANDBOX_ACCESS_KEY", "LEADHUB_SANDBOX_SECRET_KEY"])
@pytest.mark.parametrize("value", ["", "  "])
def test_a_blank_sandbox_key_is_an_error_naming_its_variable(
    config_dir: Path, variable: str, value: str
) -> None:
    """An empty key would let in any call that sends an empty one: refused by name, and
    the one error (the mappings sending to default are not also reported)."""
    with pytest.raises(ConfigError) as info:
        load(config_dir, {**ENV, variable: value})
    assert len(info.value.issues) == 1
    (issue,) = info.value.issues
    assert str(issue).startswith(f"{variable} is empty: ")  # no file: no file:line
    assert f"unset {variable} for the default, sandbox" in str(issue)


def test_a_blank_sandbox_key_does_not_matter_with_a_default_target(config_dir: Path) -> None:
    """With a target named default there is no embedded sandbox, and its keys are not read."""
    (config_dir / "targets.yml").write_text(TARGETS.replace("name: crm", "name: default"))
    (config_dir / "mappings.yaml").write_text(MAPPINGS.replace("target: crm", "target: default"))
    assert (
        not load(config_dir, {**ENV, "LEADHUB_SANDBOX_ACCESS_KEY": ""}).targets["default"].sandbox
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://bob:hunter2@api-in21.leadsquared.com/",
            "'https://***@api-in21.leadsquared.com/'",
        ),
        ("https://hunter2@api-in21.leadsquared.com", "'https://***@api-in21.leadsquared.com'"),
        ("https://bob:${GATEWAY_PASSWORD}@gw.example", "'https://***@gw.example'"),
        ("ftp://bob:hunter2@api.example/x", "'ftp://***@api.example/x'"),
    ],
)
def test_a_target_url_with_credentials_is_refused_without_showing_them(
    config_dir: Path, url: str, shown: str
) -> None:
    """A user or password in a target's url would be printed by check and kept in events'
    reasons; refused at its line, the url shown without them (also from the environment)."""
    (config_dir / "targets.yml").write_text(
        TARGETS.replace("https://api-in21.leadsquared.com/", url)
    )
    with pytest.raises(ConfigError) as info:
        load(config_dir, {**ENV, "GATEWAY_PASSWORD": "hunter2"})
    (issue,) = info.value.issues
    assert str(issue).startswith(f"{config_dir / 'targets.yml'}:3: 'url' {shown} ")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://api-in21.leadsquared.com/v2/LeadManagement.svc/Lead.Capture"
            "?accessKey=${LSQ_ACCESS_KEY}&secretKey=${LSQ_SECRET_KEY}",
            "'https://api-in21.leadsquared.com/v2/LeadManagement.svc/Lead.Capture "
            "(query not shown)'",
        ),
        (
            "https://api-in21.leadsquared.com/?x=1",
            "'https://api-in21.leadsquared.com/ (query not shown)'",
        ),
        (
            "https://api-in21.leadsquared.com#k=hunter2",
            "'https://api-in21.leadsquared.com (fragment not shown)'",
        ),
        (  # a '?' after the '#' is the fragment's: cut at the '#'
            "https://api-in21.leadsquared.com/#k?a=hunter2",
            "'https://api-in21.leadsquared.com/ (fragment not shown)'",
        ),
    ],
)
def test_a_target_url_with_a_query_is_refused_without_showing_it(
    config_dir: Path, url: str, shown: str
) -> None:
    """LeadSquared's examples put the keys in the query: a target url copied from them is
    refused at its line, saying where the keys go, and the query is never shown (check
    printed it in its summary)."""
    (config_dir / "targets.yml").write_text(
        TARGETS.replace("https://api-in21.leadsquared.com/", url)
    )
    env = {**ENV, "LSQ_ACCESS_KEY": "hunter2", "LSQ_SECRET_KEY": "hunter3"}
    with pytest.raises(ConfigError) as info:
        load(config_dir, env)
    (issue,) = info.value.issues
    kind = "fragment" if "#" in url else "query"  # (a '#' is no query: said as it is)
    assert str(issue).startswith(f"{config_dir / 'targets.yml'}:3: 'url' {shown} has a {kind}")
    assert "access_key" in str(issue) and "secret_key" in str(issue)
    if kind == "fragment":  # worded about the fragment, not about a query it does not have
        assert "query" not in str(issue).partition(":3: ")[2]
        assert "after a '#' would never be sent, so every call would go to the host's root" in (
            str(issue)
        )
    assert "hunter2" not in str(info.value) and "hunter3" not in str(info.value)


@pytest.mark.parametrize(
    ("file", "text", "shown"),
    [
        (
            "targets.yml",
            TARGETS.replace(
                "https://api-in21.leadsquared.com/",
                "api-in21.leadsquared.com/v2/LeadManagement.svc/Lead.Capture"
                "?accessKey=${LSQ_ACCESS_KEY}&secretKey=${LSQ_SECRET_KEY}",
            ),
            "targets.yml:3: 'url' 'api-in21.leadsquared.com/v2/LeadManagement.svc/Lead.Capture "
            "(query not shown)' must start with https://",
        ),
        (
            "hs.yaml",
            "kind: endpoint\nname: hs\nsource: hubspot\nclient_secret: ${LSQ_ACCESS_KEY}\n"
            "webhook_url: bob:${LSQ_ACCESS_KEY}@hub.example.com/hooks/hs?token=${LSQ_SECRET_KEY}\n"
            "access_token: ${LSQ_ACCESS_KEY}\n",
            "hs.yaml:5: 'webhook_url' '***@hub.example.com/hooks/hs (query not shown)' must be "
            "the app's target URL as HubSpot calls it",
        ),
    ],
)
def test_a_url_without_its_scheme_is_refused_without_showing_its_secrets(
    config_dir: Path, file: str, text: str, shown: str
) -> None:
    """A url written without https:// is refused, and the error shows it as every url is
    shown: a target's keys in its query (as LeadSquared's examples carry them), a HubSpot
    webhook_url's token and password, were printed whole by check and at every start."""
    (config_dir / file).write_text(text)
    env = {**ENV, "LSQ_ACCESS_KEY": "u$r-hunter2", "LSQ_SECRET_KEY": "hunter3"}
    with pytest.raises(ConfigError) as info:
        load(config_dir, env)
    assert f"{config_dir / shown}" in str(info.value)
    assert "hunter2" not in str(info.value) and "hunter3" not in str(info.value)


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/v2/LeadManagement.svc/Lead.Capture", "/v2/LeadManagement.svc/Lead.Capture"),
        ("/v2/leadmanagement.svc/", "/v2/leadmanagement.svc"),
        ("/lsq/v2/LeadManagement.svc", "/v2/LeadManagement.svc"),
        ("/lsq", None),  # a gateway's own prefix
        ("/lsqv2", None),
    ],
)
def test_a_target_url_naming_lead_capture_s_path_is_refused_at_its_line(
    config_dir: Path, path: str, named: str | None
) -> None:
    """LeadSquared's docs write Lead.Capture's whole url, and the hub adds that path to the
    target's url itself: a url copied with it (or with its /v2 start) passed check, then every
    call went to .../Lead.Capture/v2/LeadManagement.svc/Lead.Capture, a 404 that paused the
    target. Refused at its line, the fix given; a path of another name is still taken. The
    sandbox, over HTTP, refuses the doubled path as LeadSquared does."""
    url = f"https://api-in21.leadsquared.com{path}"
    (config_dir / "targets.yml").write_text(
        TARGETS.replace("https://api-in21.leadsquared.com/", url)
    )
    if named is None:
        assert load(config_dir, ENV).targets["crm"].url == url
        return
    with pytest.raises(ConfigError) as info:
        load(config_dir, ENV)
    (issue,) = info.value.issues
    doubled = url.rstrip("/") + CAPTURE
    assert str(issue) == (
        f"{config_dir / 'targets.yml'}:3: 'url' {url!r} ends in {named!r}, Lead.Capture's own "
        f"path or its start, which the hub adds to the url itself ({CAPTURE}): every call "
        f"would go to {doubled!r}, be refused (404) and pause the target. Write the account's "
        "API host alone, like https://api-in21.leadsquared.com"
    )
    with serve_sandbox() as lsq:
        answer = lsq.http.post(path.rstrip("/") + CAPTURE, json=[])
    assert answer.status_code == 404, answer.text


@pytest.mark.parametrize(("path", "named"), [("/lsq/v2", "/v2"), ("/V2/", "/V2")])
def test_a_target_url_ending_in_a_bare_v2_loads_with_a_warning(
    config_dir: Path, path: str, named: str
) -> None:
    """A gateway's own prefix may end in /v2 (https://gw.example.com/lsq/v2): it was refused
    as Lead.Capture's path. It loads as written, with a warning at its line naming what the
    hub adds after it."""
    url = f"https://gw.example.com{path}"
    (config_dir / "targets.yml").write_text(
        TARGETS.replace("https://api-in21.leadsquared.com/", url)
    )
    config = load(config_dir, ENV)
    assert config.targets["crm"].url == url.rstrip("/")
    (warning,) = [w for w in config.warnings if "'url'" in w]
    assert warning == (
        f"{config_dir / 'targets.yml'}:3: 'url' {url!r} ends in {named!r}, the start "
        f"of Lead.Capture's own path; the hub adds {CAPTURE} after it, so every call goes to "
        f"{url.rstrip('/') + CAPTURE!r}. If that is not the gateway's path, write the url "
        "without it, like https://api-in21.leadsquared.com"
    )


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://api-in21.leadsquared.com", True),
        ("http://10.0.0.5:8080/lsq", True),
        ("http://127.0.0.1:9000", False),  # a test double, or `leadhub sandbox`
        ("http://localhost:9000", False),
        ("http://[::1]:9000", False),
        # other forms of this machine, warned of as off it: the whole 127/8, a hex IPv4
        # form the resolver reads, an IPv4-mapped IPv6 loopback (127.1: refused, see
        # test_a_target_url_naming_no_host_to_call_is_refused_at_its_line)
        ("http://127.0.0.2:9000", False),
        ("http://0x7f.0.0.1:9000", False),
        ("http://[::ffff:127.0.0.1]:9000", False),
        ("http://[::ffff:10.0.0.5]:9000", True),
        ("https://api-in21.leadsquared.com", False),
    ],
)
def test_a_target_url_over_plain_http_off_this_machine_is_warned(
    config_dir: Path, url: str, warned: bool
) -> None:
    """A url written http:// for LeadSquared's https:// loaded silently: every call sent the
    keys (and the lead) unencrypted, and LeadSquared's API takes https:// only. It loads, with
    a warning at its line; a local test double or sandbox, on loopback, is not warned of."""
    (config_dir / "targets.yml").write_text(
        TARGETS.replace("https://api-in21.leadsquared.com/", url)
    )
    config = load(config_dir, ENV)
    assert config.targets["crm"].url == url
    expected = (
        f"{config_dir / 'targets.yml'}:3: 'url' {url!r} is http://, so the keys sent with "
        "every call (and every lead) would cross the network unencrypted, and LeadSquared's "
        "API takes https:// only; write https://, like https://api-in21.leadsquared.com"
    )
    assert [w for w in config.warnings if "'url'" in w] == ([expected] if warned else [])


def test_a_gateway_url_over_plain_http_ending_in_v2_is_warned_of_both(
    config_dir: Path,
) -> None:
    """A url both ending in /v2 and written http:// to another host was warned of its /v2
    alone: the first warning stood in for the second, so a gateway's prefix that truly ends
    in /v2 loaded with no word that the keys cross the network in the clear. Each is its
    own mistake, warned at the url's line."""
    url = "http://gw.example.com/lsq/v2"
    (config_dir / "targets.yml").write_text(
        TARGETS.replace("https://api-in21.leadsquared.com/", url)
    )
    config = load(config_dir, ENV)
    warnings = [w for w in config.warnings if "'url'" in w]
    at = f"{config_dir / 'targets.yml'}:3: 'url' {url!r} "
    assert [w[: len(at) + 12] for w in warnings] == [at + "ends in '/v2", at + "is http://, "]


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("u$r-access\u2026", "a character that is not ASCII (U+2026) at character 11"),
        ("u$r-acc\u00e9ss", "a character that is not ASCII (U+00E9) at character 8"),
        ("u$r-access\n\n", "a control character (U+000A) at character 11"),
        ("u$r\rx", "a control character (U+000D) at character 4"),
    ],
)
async def test_a_target_key_no_header_can_carry_is_refused_at_its_line(
    config_dir: Path, key: str, named: str
) -> None:
    """The keys go in the x-LSQ-* headers: one holding a pasted ellipsis or accented letter,
    or a line break left in its file, passed check, and then every call failed before it left
    (the hub's HTTP client refuses it: asserted below against the sandbox), logged with a
    traceback each second while the events waited without a reason. Refused at its line,
    naming the variable and the character's code point and place, never the key."""
    env = {**ENV, "LSQ_ACCESS_KEY": key}
    with pytest.raises(ConfigError) as info:
        load(config_dir, env)
    (issue,) = info.value.issues
    assert str(issue).startswith(
        f"{config_dir / 'targets.yml'}:4: 'access_key' of target 'crm' holds {named}, which "
        "the x-LSQ-AccessKey header it is sent in cannot carry"
    ), str(issue)
    assert "set ${LSQ_ACCESS_KEY} to the key" in str(issue)
    assert "u$r" not in str(info.value)
    with serve_sandbox() as lsq:
        async with make_http_client() as client:
            with pytest.raises(ValueError):  # UnicodeEncodeError, or a forbidden character
                await client.post(lsq.base + CAPTURE, json=[], headers={"x-LSQ-AccessKey": key})


@pytest.mark.parametrize("key", [" u$r-access", "u$r-access ", "u$r-access\t"])
def test_a_target_key_with_a_space_at_an_end_is_warned(config_dir: Path, key: str) -> None:
    """A key copied with a space (or tab) at an end is sent as is, and LeadSquared's keys hold
    none: every call is a 401 and the target pauses, with no word of the space. Warned at its
    line, naming the variable, never the key."""
    config = load(config_dir, {**ENV, "LSQ_ACCESS_KEY": key})
    (warning,) = [w for w in config.warnings if "access_key" in w]
    assert warning == (
        f"{config_dir / 'targets.yml'}:4: 'access_key' of target 'crm' starts or ends with a "
        "space or tab, which LeadSquared's keys do not: every call would be refused (401); "
        "set ${LSQ_ACCESS_KEY} to the key without it"
    )
    assert config.targets["crm"].access_key.reveal() == key  # (sent as given)
    assert not [w for w in load(config_dir, ENV).warnings if "access_key" in w]


def test_an_embedded_sandbox_key_no_header_can_carry_is_refused() -> None:
    """The dispatcher sends the embedded sandbox's keys in headers too: refused by name."""
    with pytest.raises(SandboxSettingError, match=r"^LEADHUB_SANDBOX_SECRET_KEY holds a char"):
        sandbox_target({"LEADHUB_SANDBOX_SECRET_KEY": "s\u20ac"})


IPV4_ONLY = (
    "which the hub's HTTP client does not call: it takes an IPv4 address only as four "
    "numbers from 0 to 255 without leading zeros"
)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://[::1", "is not a URL (Invalid IPv6 URL)"),
        ("https://", "names no host"),
        ("https:///v2", "names no host"),
        ("https://api-in21.leadsquared.com:99999", "is not a URL (Port out of range 0-65535)"),
        ("https://api-in21.leadsquared.com:0", "names port 0"),
        ("https://api in21.leadsquared.com", "holds a space or a control character"),
        ("https://user:pw@[::1", "is not a URL (Invalid IPv6 URL)"),
        # hosts the system reads as an address, and the hub's HTTP client refuses
        ("http://127.1:9000", f"names the host '127.1', {IPV4_ONLY}, here 127.0.0.1"),
        ("https://2130706433/", f"names the host '2130706433', {IPV4_ONLY}, here 127.0.0.1"),
        ("https://10.0.0.010", f"names the host '10.0.0.010', {IPV4_ONLY}, here 10.0.0.8"),
        ("https://10.0.0.1.", f"names the host '10.0.0.1.', {IPV4_ONLY}"),
    ],
)
def test_a_target_url_naming_no_host_to_call_is_refused_at_its_line(
    config_dir: Path, url: str, problem: str
) -> None:
    """An unclosed '[' made check (and serve) end in a traceback; a url without a host, with
    a port out of range or a space passed check, and every call then failed as an invalid url,
    pausing the target. Each is an error at its line (credentials never shown)."""
    (config_dir / "targets.yml").write_text(
        TARGETS.replace("https://api-in21.leadsquared.com/", url)
    )
    with pytest.raises(ConfigError) as info:
        load(config_dir, ENV)
    (issue,) = info.value.issues
    shown = url.replace("user:pw@", "***@")
    assert str(issue) == (
        f"{config_dir / 'targets.yml'}:3: 'url' {shown!r} {problem}, so no call could reach "
        "Lead.Capture; write the account's API host, like https://api-in21.leadsquared.com"
    )


def test_a_target_url_may_hold_an_at_sign_after_its_host(config_dir: Path) -> None:
    """Only the authority's ``user@`` is credentials; an ``@`` in the path is not."""
    url = "https://api-in21.leadsquared.com/a@b"
    (config_dir / "targets.yml").write_text(
        TARGETS.replace("https://api-in21.leadsquared.com/", url)
    )
    assert load(config_dir, ENV).targets["crm"].url == url


def test_a_configured_default_target_replaces_the_sandbox(config_dir: Path) -> None:
    """A target named default is used as written, not the sandbox."""
    (config_dir / "targets.yml").write_text(TARGETS.replace("name: crm", "name: default"))
    (config_dir / "mappings.yaml").write_text(MAPPINGS.replace("target: crm", "target: default"))
    default = load(config_dir, ENV).targets["default"]
    assert not default.sandbox and default.url.startswith("https://")


def test_mappings_for_an_endpoint_in_name_order(config_dir: Path) -> None:
    """Config.mappings_for gives an endpoint's compiled mappings sorted by name."""
    config = load(config_dir, ENV)
    found = config.mappings_for("google")
    assert [m.name for m in found] == ["google-a", "google-b"]
    assert all(isinstance(m, CompiledMapping) for m in found)
    assert found[1].matches({"form_id": 4}) and not found[1].matches({"form_id": 1})
    assert config.mappings_for("typeform") == []


def test_warnings_for_source_none_literal_secrets_and_unknown_attributes(config_dir: Path) -> None:
    """source: none, a secret written in the file and a non-standard attribute are warnings."""
    (config_dir / "extra.yaml").write_text(
        "kind: endpoint\nname: raw\nsource: token\ntoken: hunter2\n---\n"
        "name: raw-map\nendpoint: raw\nfields:\n  Email: $.email\n"
    )
    config = load(config_dir, ENV)
    warnings = "\n".join(config.warnings)
    assert "endpoints.yaml:45: endpoint 'lan' has source: none" in warnings
    assert "extra.yaml:4: 'token' of endpoint 'raw' is written in the file" in warnings
    assert "hunter2" not in warnings
    assert (
        "extra.yaml:9: attribute 'Email'" in warnings and "did you mean 'EmailAddress'" in warnings
    )
    assert "endpoint 'typeform' has no mapping" in warnings


def test_fields_the_sandbox_refuses_are_warned_about_only_for_the_sandbox(
    config_dir: Path,
) -> None:
    """Score is standard LeadSquared but not in the sandbox: a warning when it is the target."""
    (config_dir / "extra.yaml").write_text(
        "name: scored\n"
        "endpoint: typeform\n"
        "match: {$.crm: 0}\n"
        "fields:\n"
        "  EmailAddress: $.email\n"
        "  Score: $.score\n"  # line 6: the one warning
        "  mx_Score: $.score\n"
        "  firstname: $.name\n"  # the sandbox matches names regardless of case
        "---\n"
        "name: scored-crm\n"
        "endpoint: typeform\n"
        "target: crm\n"
        "match: {$.crm: 1}\n"
        "fields:\n"
        "  Score: $.score\n"
    )
    warnings = [w for w in load(config_dir, ENV).warnings if "sandbox does not accept" in w]
    assert len(warnings) == 1, warnings
    where = f"{config_dir / 'extra.yaml'}:6: attribute 'Score' of mapping 'scored'"
    assert warnings[0].startswith(where), warnings[0]
    assert "target 'default' is the sandbox" in warnings[0]


def test_a_misspelt_attribute_is_not_called_a_leadsquared_field(config_dir: Path) -> None:
    """`Compny` is no LeadSquared field: one warning, its "did you mean"; not a second one
    saying it is a LeadSquared field the sandbox does not accept, which sent the user
    looking for a LeadSquared account to send it to."""
    (config_dir / "extra.yaml").write_text(
        "name: typo\nendpoint: typeform\nmatch: {$.crm: 0}\n"
        "fields:\n  EmailAddress: $.email\n  Compny: $.company\n"
    )
    warnings = [w for w in load(config_dir, ENV).warnings if "extra.yaml" in w]
    assert warnings == [
        f"{config_dir / 'extra.yaml'}:6: attribute 'Compny' of mapping 'typo' is not a "
        "standard LeadSquared field (did you mean 'Company'?); custom fields start with mx_"
    ]


@pytest.mark.parametrize("search_by", ["", "search_by: EmailAddress\n"])
def test_search_by_written_as_a_field_is_warned_with_the_fix(
    config_dir: Path, search_by: str
) -> None:
    """`SearchBy` among the fields is LeadSquared's pseudo-attribute, sent whatever the body
    holds (and a second time beside search_by): the warning says to write search_by. It
    said "not a standard LeadSquared field; custom fields start with mx_"."""
    (config_dir / "extra.yaml").write_text(
        f"name: by-field\nendpoint: typeform\nmatch: {{$.crm: 0}}\n{search_by}"
        "fields:\n  EmailAddress: $.email\n  SearchBy: {value: EmailAddress}\n"
    )
    warnings = [w for w in load(config_dir, ENV).warnings if "extra.yaml" in w]
    line = 7 if search_by else 6
    assert warnings == [
        f"{config_dir / 'extra.yaml'}:{line}: 'SearchBy' in 'fields' of mapping 'by-field' is "
        "not a lead field but how LeadSquared looks the lead up: write search_by: "
        "EmailAddress (or Phone) at the mapping's level instead, which sends SearchBy only "
        "when the body holds that attribute (a SearchBy naming one the body lacks is "
        "refused: MXInvalidInputException on the sandbox) and never twice"
    ]


@pytest.mark.parametrize(("size", "warned"), [("64MiB", False), ("1GiB", True)])
def test_a_max_body_of_more_than_64_mib_is_a_warning_at_its_line(
    tmp_path: Path, size: str, warned: bool
) -> None:
    """A body is held in memory while it is read: a max_body of a GiB lets anyone who can
    reach the endpoint make the hub hold that much per connection. Allowed, with a warning at
    its line that says so and gives the fix; 64 MiB is not warned of."""
    (tmp_path / "e.yaml").write_text(
        f"kind: endpoint\nname: big\nsource: token\ntoken: ${{K}}\nmax_body: {size}\n"
    )
    config = load(tmp_path, {"K": "k"})
    assert config.endpoints["big"].max_body == (1 << 30 if warned else 64 << 20)
    expected = [
        f"{tmp_path / 'e.yaml'}:5: 'max_body' of endpoint 'big' is 1,073,741,824 bytes: every "
        "request up to that size is held in memory while it is read and stored whole, so one "
        "sender (or anyone who can reach the endpoint) can make the hub hold that much per "
        "connection; a lead delivery is a few KiB: set it to 64MiB or less"
    ]
    assert [w for w in config.warnings if "'max_body'" in w] == (expected if warned else [])


def test_variables_give_their_exact_text(tmp_path: Path) -> None:
    """A ${VAR} is the variable's text, quoted or not (a duration field parses it); $${ is
    a literal."""
    (tmp_path / "t.yaml").write_text(
        "kind: target\nname: default\nurl: ${URL}\naccess_key: ${K}\nsecret_key: ${K}\n"
        "timeout: ${TIMEOUT}\n---\n"
        "kind: endpoint\nname: e\nsource: token\ntoken: ${K}\n---\n"
        "name: m\nendpoint: e\nmatch: {$.n: '${N}'}\n"
        "fields:\n  mx_A: {value: '$${NOT_A_VAR}'}\n  mx_B:\n    value: ${N}\n"
    )
    config = load(tmp_path, {"URL": "http://x", "K": "k", "TIMEOUT": "2.5", "N": "007"})
    assert config.targets["default"].timeout == 2.5
    mapping = config.mappings["m"]
    assert mapping.matches({"n": "007"}) and not mapping.matches({"n": 7})
    assert mapping.fields[0].value == "${NOT_A_VAR}"
    assert mapping.fields[1].value == "007"  # not read again as YAML (1.1 made it 7)


def test_yaml_1_1_booleans_stay_text(tmp_path: Path) -> None:
    """Country code NO and answers like yes stay strings; only true/false are booleans."""
    (tmp_path / "m.yaml").write_text(
        "kind: endpoint\nname: e\nsource: none\n---\n"
        "name: m\nendpoint: e\nmatch: {$.country: NO, $.ok: true}\nfields: {mx_A: $.a}\n"
    )
    mapping = load(tmp_path, {}).mappings["m"]
    assert mapping.matches({"country": "NO", "ok": True})
    assert not mapping.matches({"country": "false", "ok": True})


def test_disjoint_matches_are_not_an_overlap(config_dir: Path) -> None:
    """Mappings on one endpoint with different match values load and each takes its own forms."""
    config = load(config_dir, ENV)  # google-a ($.form_id 1) and google-b (2, 3 or 4) coexist
    mappings = config.mappings_for("google")
    assert [m.name for m in mappings] == ["google-a", "google-b"]
    for form_id, taker in [(1, "google-a"), (3, "google-b")]:
        assert [m.name for m in mappings if m.matches({"form_id": form_id})] == [taker]


def test_literal_sandbox_rate_limit_error_is_reported(config_dir: Path) -> None:
    """A bad LEADHUB_SANDBOX_RATE_LIMIT is a configuration error naming the variable."""
    with pytest.raises(ConfigError, match="LEADHUB_SANDBOX_RATE_LIMIT"):
        load(config_dir, {**ENV, "LEADHUB_SANDBOX_RATE_LIMIT": "fast"})


READING = {
    "facebook": "app_secret: a\nverify_token: v\npage_access_token: p\n",
    "linkedin": "client_secret: c\naccess_token: t\n",
    "hubspot": "client_secret: c\naccess_token: t\nwebhook_url: https://h.example/hooks/e\n",
}


@pytest.mark.parametrize("source", sorted(READING))
def test_an_endpoint_whose_leads_are_read_takes_a_read_timeout(tmp_path: Path, source: str) -> None:
    """read_timeout (default 10s) on the senders whose leads are read from an API; a bad
    one is an error at its line; serve's lease check names the endpoint and its timeout."""
    from hub.dispatch.lease import lease_shortfalls

    head = f"kind: endpoint\nname: e\nsource: {source}\n{READING[source]}"
    (tmp_path / "e.yaml").write_text(head)
    assert load(tmp_path, {}).endpoints["e"].options.read_timeout == 10.0  # type: ignore[union-attr]
    (tmp_path / "e.yaml").write_text(head + "read_timeout: 3s\n")
    config = load(tmp_path, {})
    assert config.endpoints["e"].options.read_timeout == 3.0  # type: ignore[union-attr]
    assert lease_shortfalls(config, 60.0) == []
    (problem,) = [p for p in lease_shortfalls(config, 9.0) if "lead read" in p]
    assert problem.startswith("a lead read for endpoint 'e' may last 6s (twice its read_timeout)")
    assert problem.endswith("give --lease 12s or more, or lower its read_timeout")
    (tmp_path / "e.yaml").write_text(head + "read_timeout: 0s\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    line = head.count("\n") + 1
    (issue,) = info.value.issues
    assert issue.startswith(f"{tmp_path / 'e.yaml'}:{line}: 'read_timeout' of endpoint 'e' must")


def test_read_timeout_is_refused_where_no_lead_is_read(tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_text(
        "kind: endpoint\nname: e\nsource: token\ntoken: t\nread_timeout: 3s\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    (issue,) = info.value.issues
    assert issue.startswith(f"{tmp_path / 'e.yaml'}:5: unknown key 'read_timeout' in endpoint 'e'")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("$.form_id", "\"$['form_id']\""),
        ("$.form.id", '\'$["form"]["id"]\''),
        ('"$.answers[0].value"', "\"$['answers'][0].value\""),
    ],
)
def test_one_path_written_two_ways_is_still_an_overlap(
    tmp_path: Path, first: str, second: str
) -> None:
    """Two mappings matching the same form, one path written with dots and the other with
    brackets (as the Elementor example writes them), loaded as if they excluded each other:
    every event of that form was then an error at dispatch. ``check`` says so now, as it
    does for one spelling; a different value is still no overlap."""
    head = "kind: endpoint\nname: e\nsource: none\n---\n"
    one = f"name: a\nendpoint: e\nmatch: {{{first}: x1}}\nfields: {{EmailAddress: $.email}}\n"
    two = f"name: b\nendpoint: e\nmatch: {{{second}: x1}}\nfields: {{EmailAddress: $.email}}\n"
    (tmp_path / "m.yaml").write_text(head + one + "---\n" + two)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    (issue,) = info.value.issues
    assert issue.startswith(f"{tmp_path / 'm.yaml'}:12: mappings 'a' ("), issue
    assert "and 'b' both take every event of endpoint 'e' when " in issue
    (tmp_path / "m.yaml").write_text(head + one + "---\n" + two.replace("x1", "x2"))
    config = load(tmp_path, {})
    assert [m.name for m in config.mappings_for("e")] == ["a", "b"]


@pytest.mark.parametrize("kind", ["linkedin", "hubspot"])
@pytest.mark.parametrize(
    ("token", "named"),
    [
        ("AQV-t0ken\n", "a control character (U+000A) at character 10"),
        ("AQV-t0k\u00e9n", "a character that is not ASCII (U+00E9) at character 8"),
    ],
)
async def test_a_lead_api_token_no_header_can_carry_is_refused_at_its_line(
    tmp_path: Path, kind: str, token: str, named: str
) -> None:
    """LinkedIn's and HubSpot's ``access_token`` go in ``Authorization: Bearer``: one with a
    line break left in its file passed check, and every lead read then failed before it left,
    as a "network error" whose reason (logged, and each event's last error) quoted the header
    and so the token; a non-ASCII one failed with a traceback each attempt. Refused at its
    line, naming the variable and the character, never the token."""
    webhook = "webhook_url: https://hub.example.com/hooks/e\n" if kind == "hubspot" else ""
    (tmp_path / "hub.yaml").write_text(
        "kind: target\nname: default\nurl: https://api.leadsquared.com\n"
        "access_key: ak\nsecret_key: sk\n---\n"
        f"kind: endpoint\nname: e\nsource: {kind}\nclient_secret: cs\n"
        f"access_token: ${{LEAD_API_TOKEN}}\n{webhook}"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"LEAD_API_TOKEN": token})
    (issue,) = info.value.issues
    assert str(issue).startswith(
        f"{tmp_path / 'hub.yaml'}:11: 'access_token' of endpoint 'e' holds {named}, which the "
        "Authorization header it is sent in cannot carry"
    ), str(issue)
    assert "set ${LEAD_API_TOKEN} to the token alone" in str(issue)
    assert "t0k" not in str(info.value)
    with serve_sandbox() as lsq:
        async with make_http_client() as client:
            with pytest.raises(ValueError):  # UnicodeEncodeError, or a forbidden character
                await client.get(lsq.base, headers={"Authorization": f"Bearer {token}"})


def test_hubspot_subscription_types_no_event_carries_are_warned(tmp_path: Path) -> None:
    """A hubspot endpoint's subscription_types is compared exactly with each event's
    subscriptionType: one written otherwise than HubSpot writes it (contact.create,
    Contact.creation) took no event, every delivery accepted (200) and its leads dropped,
    and one of an object the dispatcher cannot read (the generic object.creation) made every
    event dead; both loaded silently. Each is warned of at its line, with the type meant;
    HubSpot's own types are not."""
    (tmp_path / "hs.yaml").write_text(
        "kind: endpoint\nname: hs\nsource: hubspot\nclient_secret: ${S}\n"
        "webhook_url: https://hub.example.com/hooks/hs\naccess_token: ${S}\n"
        "subscription_types:\n  - contact.creation\n  - contact.create\n  - Contact.creation\n"
        "  - object.creation\n  - deal.propertyChange\n  - company.merge\n---\n"
        "name: m\nendpoint: hs\nfields:\n  EmailAddress: $.properties.email\n"
    )
    config = load(tmp_path, {"S": "s"})
    where = f"{tmp_path / 'hs.yaml'}:{{}}: 'subscription_types' of endpoint 'hs' names"
    unread = (
        "the hub reads only contact, company, deal, ticket objects, named by types like "
        "contact.creation (lower case), so its events would be dead"
    )
    assert [w for w in config.warnings if "subscription_types" in w] == [
        f"{where.format(9)} 'contact.create' (did you mean 'contact.creation'?): HubSpot "
        "sends no event of that type, so none would be taken",
        f"{where.format(10)} 'Contact.creation' (did you mean 'contact.creation'?): {unread}",
        f"{where.format(11)} 'object.creation' (did you mean 'contact.creation'?): {unread}",
    ]
    options = config.endpoints["hs"].options
    assert isinstance(options, HubSpotOptions)
    assert "contact.create" in options.subscription_types  # warned, still as written


def test_hubspot_subscription_types_whose_object_cannot_be_read_are_warned(
    tmp_path: Path,
) -> None:
    """contact.deletion (and privacyDeletion) comes once the contact is deleted: its read is
    HubSpot's 404, each event dead ("the object does not exist"); an associationChange event
    names no objectId, each left out at ingest. Both were taken silently. Each is warned of
    at its line, saying to leave it out; the readable types (creation, merge) are not."""
    (tmp_path / "hs.yaml").write_text(
        "kind: endpoint\nname: hs\nsource: hubspot\nclient_secret: ${S}\n"
        "webhook_url: https://hub.example.com/hooks/hs\naccess_token: ${S}\n"
        "subscription_types:\n  - contact.creation\n  - contact.deletion\n"
        "  - contact.privacyDeletion\n  - company.associationChange\n  - company.merge\n---\n"
        "name: m\nendpoint: hs\nfields:\n  EmailAddress: $.properties.email\n"
    )
    config = load(tmp_path, {"S": "s"})
    where = f"{tmp_path / 'hs.yaml'}:{{}}: 'subscription_types' of endpoint 'hs' names"
    gone = "HubSpot sends it once the object is deleted, and its read finds nothing"
    end = ", so each of its events would be dead or left out: leave it out"
    assert [w for w in config.warnings if "subscription_types" in w] == [
        f"{where.format(9)} 'contact.deletion': {gone}{end}",
        f"{where.format(10)} 'contact.privacyDeletion': {gone}{end}",
        f"{where.format(11)} 'company.associationChange': its events name two objects "
        f"(fromObjectId, toObjectId), no objectId to read{end}",
    ]


def test_search_by_in_other_letter_case_names_the_field_to_write(tmp_path: Path) -> None:
    """`search_by: emailaddress` beside an `EmailAddress` field is an error at its line
    naming the spelling to write; it said the attribute was not among the fields and to map
    it too, though it was mapped (a second field would have sent it twice)."""
    (tmp_path / "m.yaml").write_text(
        "kind: endpoint\nname: e\nsource: none\n---\n"
        "name: m\nendpoint: e\nsearch_by: emailaddress\nfields:\n  EmailAddress: $.email\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert [issue.removeprefix(f"{tmp_path / 'm.yaml'}:") for issue in info.value.issues] == [
        "7: search_by 'emailaddress' of mapping 'm' names its field 'EmailAddress' in other "
        "letter case; write search_by: EmailAddress, as the field is written"
    ]


def test_a_related_company_id_that_is_no_account_id_is_warned(tmp_path: Path) -> None:
    """An account's name where its id goes (`RelatedCompanyId: {value: Acme Corp}`, or a
    variable holding one) was taken silently, and every lead was refused (no such account).
    A GUID, or one from a variable holding one, is not warned about."""
    (tmp_path / "m.yaml").write_text(
        "kind: endpoint\nname: e\nsource: none\n---\n"
        "name: m\nendpoint: e\nmatch: {$.form: a}\nfields:\n  EmailAddress: $.email\n"
        "  RelatedCompanyId: {value: Acme Corp}\n---\n"
        "name: n\nendpoint: e\nmatch: {$.form: b}\nfields:\n  EmailAddress: $.email\n"
        '  RelatedCompanyId: {path: $.account, default: "${ACCOUNT}"}\n---\n'
        "name: o\nendpoint: e\nmatch: {$.form: c}\nfields:\n  EmailAddress: $.email\n"
        '  RelatedCompanyId: {value: "${GOOD_ACCOUNT}"}\n'
        "  mx_Account: {value: Acme Corp}\n"
    )
    env = {"ACCOUNT": "acme", "GOOD_ACCOUNT": "8E3B1C9A-0D5E-4C55-9A7E-2F6D0F1B7C11"}
    warnings = [w for w in load(tmp_path, env).warnings if "account id" in w]
    prefix = f"{tmp_path / 'm.yaml'}:"
    fix = (
        "which is no account id: LeadSquared links the lead to the account whose id (a GUID, "
        "like 8e3b1c9a-0d5e-4c55-9a7e-2f6d0f1b7c11) it is given and refuses every lead naming "
        "one it does not hold (MXInvalidInputException); set"
    )
    sandbox = (
        "to the account's id (on the embedded sandbox, the Id that POST /_sandbox/accounts answers)"
    )
    assert warnings == [
        f"{prefix}10: 'value' of field 'RelatedCompanyId' of mapping 'm' is 'Acme Corp', "
        f"{fix} it {sandbox}",
        f"{prefix}17: 'default' of field 'RelatedCompanyId' of mapping 'n' is 'acme', "
        f"{fix} what ${{ACCOUNT}} gives {sandbox}",
    ]


def _account_targets(tmp_path: Path, second: str, *, key: str = "${KEY}") -> list[str]:
    """Warnings of two targets at one url, the second with ``second`` (its rate_limit line)
    and access key ``key``."""
    target = (
        "kind: target\nname: {name}\nurl: https://api-in21.leadsquared.com{slash}\n"
        "access_key: {key}\nsecret_key: ${{SECRET}}\n{limit}"
    )
    first = target.format(name="crm", slash="", key="${KEY}", limit="rate_limit: 25/5s\n")
    other = target.format(name="crm-eu", slash="/", key=key, limit=second)
    (tmp_path / "targets.yaml").write_text(first + "---\n" + other)
    environ = {"KEY": "the-key", "OTHER_KEY": "another-key", "SECRET": "s"}
    return [w for w in load(tmp_path, environ).warnings if "same LeadSquared account" in w]


def test_targets_of_one_account_with_different_rate_limits_are_a_warning(tmp_path: Path) -> None:
    """Two targets with one url and access key share one rate window: given different
    rate_limits (or one at off), neither limit holds for its target alone (a 1/1s target sent
    2 to 4 calls a second beside a 5/1s one). A warning at the second, naming the first and
    the fix; never the key. The same limit, or another key, is no warning."""
    (warning,) = _account_targets(tmp_path, "rate_limit: 10/5s\n")
    assert warning.startswith(
        f"{tmp_path / 'targets.yaml'}:8: target 'crm-eu' sends to the same LeadSquared "
        f"account as target 'crm' ({tmp_path / 'targets.yaml'}:1: the same url and access_key)"
    )
    assert "(10/5s and 25/5s)" in warning and warning.endswith("give both the account's limit")
    assert "the-key" not in warning
    (off,) = _account_targets(tmp_path, "rate_limit: off\n")
    assert "but 'crm-eu' has rate_limit: off: its calls are not counted" in off
    assert _account_targets(tmp_path, "") == []  # (the default: 25/5s)
    assert _account_targets(tmp_path, "rate_limit: 10/5s\n", key="${OTHER_KEY}") == []
    # two users' keys naming one account are that account: its window is shared
    named = _account_targets(tmp_path, "rate_limit: 10/5s\naccount: acme\n", key="${OTHER_KEY}")
    assert named == []  # the first names no account: another one
    (tmp_path / "targets.yaml").write_text(
        (tmp_path / "targets.yaml").read_text().replace("rate_limit: 25/5s\n", "account: acme\n")
    )
    environ = {"KEY": "the-key", "OTHER_KEY": "another-key", "SECRET": "s"}
    (warning,) = [w for w in load(tmp_path, environ).warnings if "same LeadSquared account" in w]
    assert "(the-key" not in warning and f"{tmp_path / 'targets.yaml'}:1: account: acme)" in warning


def test_an_empty_account_name_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    """``account:`` with nothing in it would make every such target one account."""
    (tmp_path / "targets.yaml").write_text(
        "kind: target\nname: crm\nurl: https://api-in21.leadsquared.com\n"
        "access_key: k\nsecret_key: s\naccount: '  '\n"
    )
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {})
    assert f"{tmp_path / 'targets.yaml'}:6: 'account' of target 'crm' is empty" in str(caught.value)
