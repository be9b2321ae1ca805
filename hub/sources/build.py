"""The :class:`~hub.sources.base.Source` of an endpoint: one per ``source`` kind, with its
``split`` and its rotating secrets.

Apart from the package (``hub.sources``) so that what names a delivery (``skimmed_id``,
``delivery_ids``) imports none of the config: the SQLite store's writer process reads a
skim with it, and starts with only what it writes with.
"""

from __future__ import annotations

from hub.config.models import (
    Endpoint,
    FacebookOptions,
    GoogleOptions,
    HmacOptions,
    HubSpotOptions,
    LinkedInOptions,
    SourceOptions,
    StandardOptions,
    TokenOptions,
    TypeformOptions,
)
from hub.sources.base import Source
from hub.sources.facebook import FacebookSource
from hub.sources.google import GoogleSource
from hub.sources.hmac_ import HmacSource
from hub.sources.hubspot import HubSpotSource
from hub.sources.linkedin import LinkedInSource
from hub.sources.none import NoneSource
from hub.sources.rotation import rotating_source
from hub.sources.split import SplitSource
from hub.sources.standard import StandardSource
from hub.sources.token_ import TokenSource
from hub.sources.typeform import TypeformSource


def build_source(endpoint: Endpoint) -> Source:
    """The source for ``endpoint``, built from its typed options (with its ``split``)."""
    source = _source(endpoint)
    return source if endpoint.split is None else SplitSource(source, endpoint.split, endpoint.name)


def _source(endpoint: Endpoint) -> Source:
    """The endpoint's source; with several secrets (rotation), one per secret, any passing."""
    return rotating_source(endpoint.options, _built)


def _built(opts: SourceOptions) -> Source:
    if isinstance(opts, FacebookOptions):
        return FacebookSource(opts)
    if isinstance(opts, LinkedInOptions):
        return LinkedInSource(opts)
    if isinstance(opts, HubSpotOptions):
        return HubSpotSource(opts)
    if isinstance(opts, GoogleOptions):
        return GoogleSource(opts)
    if isinstance(opts, TypeformOptions):
        return TypeformSource(opts)
    if isinstance(opts, HmacOptions):
        return HmacSource(opts)
    if isinstance(opts, TokenOptions):
        return TokenSource(opts)
    if isinstance(opts, StandardOptions):
        return StandardSource(opts)
    return NoneSource(opts)
