"""``leadhub check [DIR]``: load a configuration directory as ``serve`` would, report all.

Prints every error as ``file:line: message`` (then the warnings, marked
``warning:``) and exits 1 when there is any error; otherwise prints the
warnings and a one-line summary and exits 0. ``${VAR}`` comes from the
environment; unset variables are named, and so are ``LEADHUB_*`` variables that nothing
reads (a misspelt ``LEADHUB_PURGE_AFTR``: a warning, with the closest known name). What
serve refuses in the environment besides (a proxy variable or ``SSL_CERT_FILE`` it cannot
use, a ``LEADHUB_LEASE`` too short for the targets' calls, a ``LEADHUB_PURGE_AFTER`` it
refuses, a ``LEADHUB_ROLE`` that is no role, a ``LEADHUB_METRICS_TOKEN`` no scraper could
send) is an error too, said as serve says it.
"""

from __future__ import annotations

import argparse
import os

from hub.cli import ROLE_VARIABLE, Looked, role_problem, unknown_variables
from hub.config import Config, ConfigError, load
from hub.secrets import SettingError, metrics_token
from hub.units import UnitError, parse_lease

#: The variables serve reads its --lease and --role from (``hub.cli``): check judges the
#: lease serve will run with.
LEASE_VARIABLE = "LEADHUB_LEASE"
PURGE_AFTER_VARIABLE = "LEADHUB_PURGE_AFTER"


def environment_problems() -> list[str]:
    """What ``serve`` refuses in the environment besides the directory, each with the fix: a
    proxy variable its dispatcher cannot send through (``HTTPS_PROXY=socks5://...``), an
    ``SSL_CERT_FILE`` OpenSSL cannot read, a ``LEADHUB_ROLE`` that is no role, a
    ``LEADHUB_METRICS_TOKEN`` that is empty or that no scraper could send. Check said ok
    with them, and serve then exited 2."""
    from hub.dispatch.proxies import Proxies, ProxySettingError, ca_file_problem

    problems: list[str] = []
    try:
        Proxies()
    except ProxySettingError as exc:
        problems.append(str(exc))
    if (unread := ca_file_problem()) is not None:
        problems.append(unread)
    if (role := role_problem(os.environ)) is not None:
        problems.append(role)
    try:
        metrics_token(os.environ)
    except SettingError as exc:
        problems.append(str(exc))
    return problems


def _lease_problems(config: Config, warnings: list[str]) -> list[str]:
    """serve (all or worker roles) refuses a lease too short for the targets' calls or the
    lead reads: said here at the target's (or endpoint's) file:line. For the lease serve
    will run with: ``LEADHUB_LEASE`` when the environment sets it, whose shortfalls serve
    refuses (errors, returned), else its default, which a longer ``--lease`` may replace
    (warnings, added to ``warnings``). Check judged the default alone: with
    ``LEADHUB_LEASE=120s`` it warned that 60s was too short, and with ``LEADHUB_LEASE=30s``
    it said ok to what serve then refused (exit 2)."""
    from hub.dispatch.lease import DEFAULT_LEASE, lease_shortfalls_where

    given = os.environ.get(LEASE_VARIABLE)
    if given is None:
        for origin, problem in lease_shortfalls_where(config, DEFAULT_LEASE):
            where = f"{origin}: " if origin is not None else ""
            warnings.append(
                f"{where}serve's default --lease {DEFAULT_LEASE:g}s is too short: {problem}"
            )
        return []
    if os.environ.get(ROLE_VARIABLE, "").lower() == "web":  # as serve reads it: any case
        return []  # a web instance claims nothing: serve takes any lease then
    try:
        lease = parse_lease(given)
    except UnitError as exc:
        return [f"{LEASE_VARIABLE}: {exc}"]
    problems = []
    for origin, problem in lease_shortfalls_where(config, lease):
        where = f"{origin}: " if origin is not None else ""
        problems.append(f"{where}{LEASE_VARIABLE}={given} is too short: {problem}")
    return problems


def _purge_after_problems() -> list[str]:
    """``LEADHUB_PURGE_AFTER`` as serve refuses it (exit 2): not a duration, or shorter than
    senders retry; check said ok to it."""
    given = os.environ.get(PURGE_AFTER_VARIABLE)
    if given is None:
        return []
    # (imported here: the retention task's module loads starlette and prometheus_client,
    # ~50 ms of a check run that names no LEADHUB_PURGE_AFTER)
    from hub.store.retention import parse_purge_after

    try:
        parse_purge_after(given)
    except UnitError as exc:
        return [f"{PURGE_AFTER_VARIABLE}: {exc}"]
    return []


def _errors(args: argparse.Namespace, errors: list[str], warnings: list[str]) -> int:
    """Print ``errors``, then ``warnings`` and the count; 1."""
    for line in errors:
        print(line)
    for line in warnings:
        print(f"warning: {line}")
    count = len(errors)
    print(f"{args.dir}: {count} error{'s' if count != 1 else ''}")
    return 1


def run(args: argparse.Namespace) -> int:
    """Check ``args.dir``; 0 when it loads, 1 when it has errors."""
    environment = environment_problems()
    looked = Looked(os.environ)
    try:
        config = load(args.dir, looked)
    except ConfigError as exc:
        unread = [why for _, why in unknown_variables(os.environ, looked.names)]
        return _errors(args, [*exc.issues, *environment], [*exc.warnings, *unread])
    warnings = list(config.warnings)
    warnings += [why for _, why in unknown_variables(os.environ, looked.names)]
    environment += _lease_problems(config, warnings) + _purge_after_problems()
    if environment:
        return _errors(args, environment, warnings)
    for line in warnings:
        print(f"warning: {line}")
    default = config.targets["default"]
    sends_to = "the embedded sandbox" if default.sandbox else default.url
    n_endpoints, n_mappings, n_targets = (
        len(config.endpoints),
        len(config.mappings),
        len(config.targets),
    )
    print(
        f"{args.dir}: ok: {n_endpoints} endpoint{'s' if n_endpoints != 1 else ''}, "
        f"{n_mappings} mapping{'s' if n_mappings != 1 else ''}, "
        f"{n_targets} target{'s' if n_targets != 1 else ''} (default: {sends_to}), "
        f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
    )
    return 0
