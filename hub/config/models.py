"""The validated configuration, as the rest of the hub sees it.

The loader (``hub.config.loader``) turns YAML documents into these frozen
objects; nothing else reads YAML. Secrets are :class:`hub.secrets.Secret`,
durations are seconds, sizes are bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hub.secrets import Secret
from hub.units import RateLimit

#: The limit LeadSquared documents on every endpoint page: 25 calls in 5 seconds.
DEFAULT_RATE_LIMIT = RateLimit(calls=25, window=5.0)
DEFAULT_MAX_BODY = 1024 * 1024  # bytes
DEFAULT_TOLERANCE = 300.0  # seconds: Standard Webhooks' and most schemes' replay window
DEFAULT_GRAPH_URL = "https://graph.facebook.com/v21.0"
DEFAULT_LINKEDIN_API_URL = "https://api.linkedin.com/rest"
#: The ``LinkedIn-Version`` (YYYYMM) of the REST API the lead reads ask for by default.
DEFAULT_LINKEDIN_VERSION = "202606"
DEFAULT_HUBSPOT_API_URL = "https://api.hubapi.com"
#: Contact properties read by default with a HubSpot event's object.
DEFAULT_HUBSPOT_PROPERTIES = (
    "email",
    "firstname",
    "lastname",
    "phone",
    "mobilephone",
    "company",
    "jobtitle",
    "city",
    "country",
    "website",
    "lifecyclestage",
    "hs_analytics_source",
    "hs_lead_status",
    "createdate",
)
#: Graph lead fields fetched by default: everything a mapping is likely to want.
DEFAULT_GRAPH_FIELDS = (
    "id",
    "created_time",
    "field_data",
    "ad_id",
    "ad_name",
    "adset_id",
    "adset_name",
    "campaign_id",
    "campaign_name",
    "form_id",
    "is_organic",
    "platform",
    "custom_disclaimer_responses",
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a piece of configuration was written: ``file:line``."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class JsonPath(Protocol):
    """A JSONPath compiled once at load."""

    @property
    def text(self) -> str: ...

    def values(self, document: Any) -> list[Any]:
        """Every value the path finds in ``document``, in document order."""
        ...


#: Seconds a lead read (Graph, LinkedIn, HubSpot) may wait to connect and for each part of
#: the answer, the whole read at most twice that; an endpoint's ``read_timeout``.
DEFAULT_READ_TIMEOUT = 10.0


# --- endpoints: one options class per ``source`` kind -----------------------------------------


@dataclass(frozen=True, slots=True)
class FacebookOptions:
    app_secret: Secret
    verify_token: Secret
    page_access_token: Secret
    graph_url: str = DEFAULT_GRAPH_URL
    fields: tuple[str, ...] = DEFAULT_GRAPH_FIELDS
    #: Also accept the legacy SHA-1 ``X-Hub-Signature`` when the SHA-256 header is absent.
    allow_sha1: bool = False
    read_timeout: float = DEFAULT_READ_TIMEOUT
    #: The list's other values while the secret is rotated (app_secret: ["${NEW}", "${OLD}"]):
    #: a delivery verified under any of them is taken (``hub.sources.rotation``).
    rotating: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True)
class LinkedInOptions:
    client_secret: Secret
    #: An OAuth token with ``r_marketing_leadgen_automation``, for the lead reads.
    access_token: Secret
    api_url: str = DEFAULT_LINKEDIN_API_URL
    api_version: str = DEFAULT_LINKEDIN_VERSION
    read_timeout: float = DEFAULT_READ_TIMEOUT
    #: The list's other values while the secret is rotated (client_secret: ["${NEW}", "${OLD}"]):
    #: a delivery verified under any of them is taken (``hub.sources.rotation``).
    rotating: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True)
class HubSpotOptions:
    """A HubSpot app's webhook subscriptions (the Webhooks API, not workflows)."""

    client_secret: Secret
    #: The app's target URL exactly as configured: X-HubSpot-Signature-v3 covers it.
    webhook_url: str
    #: A token with the read scope of the objects (a private app's, for one account).
    access_token: Secret
    api_url: str = DEFAULT_HUBSPOT_API_URL
    properties: tuple[str, ...] = DEFAULT_HUBSPOT_PROPERTIES
    subscription_types: tuple[str, ...] = ("contact.creation",)
    tolerance: float = DEFAULT_TOLERANCE
    read_timeout: float = DEFAULT_READ_TIMEOUT
    #: Which signatures are taken (:data:`HUBSPOT_SIGNATURES`): ``any``, X-HubSpot-Signature-v3
    #: when the request carries it, else the legacy X-HubSpot-Signature (v1 or v2); ``v3``,
    #: X-HubSpot-Signature-v3 only.
    signatures: str = "any"
    #: The list's other values while the secret is rotated (client_secret: ["${NEW}", "${OLD}"]):
    #: a delivery verified under any of them is taken (``hub.sources.rotation``).
    rotating: tuple[Secret, ...] = ()


#: The values of a HubSpot endpoint's ``signatures``.
HUBSPOT_SIGNATURES = ("any", "v3")
#: The CRM objects a hubspot endpoint's events may name (the ``subscriptionType``'s prefix),
#: and their path in HubSpot's CRM API, where the dispatcher reads them (hub/dispatch/hubspot.py).
HUBSPOT_OBJECTS = {
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "ticket": "tickets",
}


@dataclass(frozen=True, slots=True)
class GoogleOptions:
    key: Secret
    #: The list's other values while the secret is rotated (key: ["${NEW}", "${OLD}"]):
    #: a delivery verified under any of them is taken (``hub.sources.rotation``).
    rotating: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True)
class TypeformOptions:
    secret: Secret
    #: The list's other values while the secret is rotated (secret: ["${NEW}", "${OLD}"]):
    #: a delivery verified under any of them is taken (``hub.sources.rotation``).
    rotating: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True)
class HmacOptions:
    header: str
    secret: Secret
    algorithm: str = "sha256"  # sha256 | sha1 | sha512
    encoding: str = "hex"  # hex | base64
    prefix: str = ""  # e.g. "sha256="
    signed: str = "{body}"  # e.g. "{timestamp}.{body}"
    timestamp_header: str | None = None
    tolerance: float = DEFAULT_TOLERANCE
    #: Unit of the timestamp header: seconds or milliseconds (Webflow sends ms).
    timestamp_unit: str = "s"  # s | ms
    #: The list's other values while the secret is rotated (secret: ["${NEW}", "${OLD}"]):
    #: a delivery verified under any of them is taken (``hub.sources.rotation``).
    rotating: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True)
class TokenOptions:
    token: Secret
    header: str | None = None  # a named header, besides ``Authorization: Bearer`` and ``?token=``
    #: The list's other values while the secret is rotated (token: ["${NEW}", "${OLD}"]):
    #: a delivery verified under any of them is taken (``hub.sources.rotation``).
    rotating: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True)
class StandardOptions:
    secret: Secret  # whsec_<base64 key>
    tolerance: float = DEFAULT_TOLERANCE
    #: The list's other values while the secret is rotated (secret: ["${NEW}", "${OLD}"]):
    #: a delivery verified under any of them is taken (``hub.sources.rotation``).
    rotating: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True)
class NoneOptions:
    pass


SourceOptions = (
    FacebookOptions
    | LinkedInOptions
    | HubSpotOptions
    | GoogleOptions
    | TypeformOptions
    | HmacOptions
    | TokenOptions
    | StandardOptions
    | NoneOptions
)

#: The field of each options class holding the secret or token the sender signs or sends
#: with: the one key of its source that may be a list (its other values in ``rotating``).
ROTATABLE: Mapping[type, str] = {
    FacebookOptions: "app_secret",
    LinkedInOptions: "client_secret",
    HubSpotOptions: "client_secret",
    GoogleOptions: "key",
    TypeformOptions: "secret",
    HmacOptions: "secret",
    TokenOptions: "token",
    StandardOptions: "secret",
}

#: Sources whose deliveries are split by the sender's own format (``split`` is refused there).
SELF_SPLITTING = ("facebook", "linkedin", "hubspot")

SOURCES = (
    "facebook",
    "linkedin",
    "hubspot",
    "google",
    "typeform",
    "hmac",
    "token",
    "standard",
    "none",
)
#: Options of the sources whose events carry only ids: the dispatcher reads the lead first.
FETCHING = (FacebookOptions, LinkedInOptions, HubSpotOptions)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where webhooks come in (``POST /hooks/{name}``) and how they are trusted."""

    name: str
    source: str  # one of SOURCES
    options: SourceOptions
    #: JSONPath naming the delivery id (a list's paths together: ``DedupePaths``); ``None``
    #: uses the source's natural id, else a body hash.
    dedupe: JsonPath | None = None
    max_body: int = DEFAULT_MAX_BODY
    origin: Origin | None = None
    #: JSONPath finding the leads of a delivery that carries several (one event per value
    #: found, ``dedupe`` then evaluated on each); ``None``: the body is one lead, or the
    #: sender splits its deliveries itself (Facebook, LinkedIn, HubSpot apps).
    split: JsonPath | None = None


# --- targets ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Exponential backoff with full jitter, per target."""

    initial: float = 10.0  # seconds before the first retry (upper bound of its jitter)
    max_interval: float = 3600.0  # the longest wait between two tries
    give_up_after: float = 72 * 3600.0  # dead once this long has passed since receipt
    multiplier: float = 2.0


#: The longest ``timeout`` a target may have (seconds). A call holds its rate-limit slot for at
#: most twice its timeout and a second (``hub.dispatch.ratelimit.hold_for``); every process
#: sharing the account must tell such a slot from one stamped before the wall clock was set
#: back, which the store does for slots said to end more than ``SLOT_HORIZON`` (300 s) ahead.
MAX_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Target:
    """A LeadSquared account (or the embedded sandbox) that leads are sent to."""

    name: str
    #: Base URL of the account's API host, e.g. ``https://api-in21.leadsquared.com``.
    #: Empty for the embedded sandbox until ``serve`` knows its own address.
    url: str
    access_key: Secret
    secret_key: Secret
    rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT
    timeout: float = 10.0
    retry: RetrySchedule = field(default_factory=RetrySchedule)
    #: Whether this is the embedded sandbox served under ``/sandbox``.
    sandbox: bool = False
    origin: Origin | None = None
    #: Calls in flight at once to this target; None: the dispatcher's default (16).
    concurrency: int | None = None
    #: The LeadSquared account this target's keys belong to, as named in its ``account:``;
    #: None: the account is told by the url and access key (:meth:`account_identity`).
    account: str | None = None

    def account_identity(self) -> tuple[str, str]:
        """What tells this target's LeadSquared account from another's: its ``account:``
        name, or else its url and access key. Targets of one account share its rate window
        (LeadSquared limits the account); two users' keys of one account look like two
        accounts unless both name it."""
        if self.account:
            return ("account", self.account.casefold())  # (Acme and acme: one account)
        return (self.url.rstrip("/").lower(), self.access_key.reveal())


@dataclass(frozen=True)
class Config:
    """Everything in a configuration directory, validated."""

    directory: Path
    targets: Mapping[str, Target]
    endpoints: Mapping[str, Endpoint]
    #: Compiled mappings (``hub.mapping``) by name.
    mappings: Mapping[str, Any]
    #: Non-fatal findings (e.g. an endpoint with ``source: none``), as ``file:line: message``.
    warnings: tuple[str, ...] = ()

    def mappings_for(self, endpoint: str) -> list[Any]:
        """The mappings that take events of ``endpoint``, in name order."""
        return [m for _, m in sorted(self.mappings.items()) if m.endpoint == endpoint]
