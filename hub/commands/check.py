"""``leadhub check [DIR]``: load a configuration directory as ``serve`` would, report all.

Prints every error as ``file:line: message`` (then the warnings, marked
``warning:``) and exits 1 when there is any error; otherwise prints the
warnings and a one-line summary and exits 0. ``${VAR}`` comes from the
environment; unset variables are named. What serve refuses in the environment
besides (a proxy variable or ``SSL_CERT_FILE`` it cannot use) is an error too,
said as serve says it.
"""

from __future__ import annotations

import argparse
import os

from hub.config import ConfigError, load


def environment_problems() -> list[str]:
    """What ``serve`` refuses in the environment besides the directory, each with the fix: a
    proxy variable its dispatcher cannot send through (``HTTPS_PROXY=socks5://...``), an
    ``SSL_CERT_FILE`` OpenSSL cannot read. Check said ok with them, and serve then exited 2."""
    from hub.dispatch.transport import Proxies, ProxySettingError, ca_file_problem

    problems: list[str] = []
    try:
        Proxies()
    except ProxySettingError as exc:
        problems.append(str(exc))
    if (unread := ca_file_problem()) is not None:
        problems.append(unread)
    return problems


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
    try:
        config = load(args.dir, os.environ)
    except ConfigError as exc:
        return _errors(args, [*exc.issues, *environment], exc.warnings)
    # serve (all or worker roles) refuses a lease too short for the targets' calls or the
    # lead reads: say so here too, for its default lease (a longer --lease may be given).
    # At the target's (or endpoint's) file:line, as every other warning is.
    from hub.dispatch.worker import DEFAULT_LEASE, lease_shortfalls_where

    warnings = list(config.warnings)
    for origin, problem in lease_shortfalls_where(config, DEFAULT_LEASE):
        where = f"{origin}: " if origin is not None else ""
        warnings.append(
            f"{where}serve's default --lease {DEFAULT_LEASE:g}s is too short: {problem}"
        )
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
