"""The ``leadhub`` command: parses arguments and hands each subcommand to its module.

Every flag of every subcommand can also be set through ``LEADHUB_<FLAG>`` (``--db``:
``LEADHUB_DB``, ``--config-dir``: ``LEADHUB_CONFIG_DIR``, ...); the flag wins over the
variable. A variable is checked exactly as its flag is (type, range, choices) when the
subcommand that has the flag runs, and a bad one is a usage error (exit 2) naming it: a bad
``LEADHUB_PORT`` stops ``serve`` and ``sandbox``, never ``check``. Yes/no flags take
``1 true yes on`` or ``0 false no off``; repeatable flags take a list separated by commas or
spaces. Each subcommand lives in ``hub.commands.<name>`` as ``run(args) -> int`` and is
imported only when used, so ``leadhub check`` never loads the web stack.
"""

from __future__ import annotations

import argparse
import codecs
import difflib
import errno
import importlib
import io
import itertools
import os
import re
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from hub import __version__, stopped
from hub.secrets import METRICS_TOKEN_VARIABLE, WINDOWS_LINE_ENDS, blank_around
from hub.units import UnitError, age_units_hint, parse_duration, unitless_age

ENV_PREFIX = "LEADHUB_"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
LOG_LEVELS = ("debug", "info", "warning", "error")

ENV_RULES = (
    f"Every flag can also be set as {ENV_PREFIX}<FLAG> (shown as [env ...] beside it), checked "
    "like the flag; the flag wins. Yes/no flags take 1, true, yes or on, and 0, false, no or "
    "off; repeatable flags take a list separated by commas or spaces (LEADHUB_ID='3,7')."
)

#: ``serve``'s variables that are no flag's (:data:`OWN_VARIABLES`), after :data:`ENV_RULES`.
SERVE_RULES = (
    f"{ENV_RULES} {METRICS_TOKEN_VARIABLE}, when set, is the token GET /metrics asks for "
    "(Authorization: Bearer <token>; 401 without it); unset, /metrics is open. "
    "LEADHUB_SANDBOX_ACCESS_KEY, LEADHUB_SANDBOX_SECRET_KEY and LEADHUB_SANDBOX_RATE_LIMIT "
    "set the embedded sandbox's keys and rate limit."
)


def port(text: str) -> int:
    """A TCP port number: 0 (any free port) to 65535."""
    number = int(text)
    if not 0 <= number <= 65535:
        msg = f"{number} is out of range; a port is 0 to 65535"
        raise argparse.ArgumentTypeError(msg)
    return number


def event_id(text: str) -> int:
    """An event id for ``--id``: an integer from 1 (the first id a store gives) to the largest a
    store holds (beyond a signed 64-bit integer either way, an OverflowError deep in the
    store's driver otherwise)."""
    from hub.store.base import MAX_ID  # (only when an --id is given)

    try:
        number = int(text)
    except ValueError:
        msg = f"{text!r} is not an event id (a whole number, as leadhub events shows)"
        raise argparse.ArgumentTypeError(msg) from None
    if number > MAX_ID:
        msg = f"{number}: no event id is that large (at most {MAX_ID})"
        raise argparse.ArgumentTypeError(msg)
    if number < 1:
        msg = f"{number}: no event id is below 1 (ids count up from 1)"
        raise argparse.ArgumentTypeError(msg)
    return number


def _not_empty(text: str, why: str) -> str:
    """``text``, or a usage error saying ``why`` an empty value (a ``LEADHUB_<FLAG>=`` that a
    template left blank) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError(why)
    return text


def _unpadded(text: str, what: str) -> str:
    """``text``, or a usage error naming the blank character it starts or ends with: an env
    file saved with Windows line endings (``docker run --env-file`` keeps the ``\\r``) gave
    ``LEADHUB_CONFIG_DIR=/config\\r``, refused as "not a directory" in a line whose carriage
    return hid the name on a terminal, and ``LEADHUB_HOST=0.0.0.0\\r`` a "startup failed:
    Name or service not known"."""
    if (blank := blank_around(text)) is None:
        return text
    said, char = blank
    fix = f": {WINDOWS_LINE_ENDS}" if char == "\r" else "; remove it"
    raise argparse.ArgumentTypeError(f"the {what} {said}{fix}")


def address(text: str) -> str:
    """An address to listen on, not empty: bound as given, an empty one listens on every
    interface, which nobody asks for that way. Nor starting or ending with a blank (no
    address does: :func:`_unpadded`)."""
    _not_empty(
        text,
        "an empty address would listen on every interface; give 127.0.0.1 (this machine "
        "only), or 0.0.0.0 or :: to mean every interface",
    )
    return _unpadded(text, "address")


def directory(text: str) -> str:
    """A configuration directory, not empty: an empty name is the current directory, whose
    stray ``*.yaml`` files would be read as the hub's configuration. A name starting or
    ending with a blank is refused unless a directory has that very name
    (:func:`_unpadded`)."""
    _not_empty(
        text,
        "an empty directory name would read the current directory; give the configuration "
        "directory, like mappings/",
    )
    return text if os.path.isdir(text) else _unpadded(text, "directory name")


def sandbox_key(text: str) -> str:
    """A key ``leadhub sandbox`` accepts, not empty: the sandbox compares a call's key with
    it, so an empty one is matched by any call sending an empty ``accessKey=`` (or
    ``x-LSQ-AccessKey``) and keeps nobody out. Nor holding a character no HTTP header carries
    (a pasted ``…``, an accented letter), as ``serve`` refuses for its embedded sandbox: the
    sandbox served, and every call sending the key in ``x-LSQ-AccessKey`` (as the hub does)
    was a 401."""
    from hub.config.endpoints import unsendable_char  # (only for a sandbox's keys)

    _not_empty(
        text,
        "an empty key is matched by any call that sends an empty one, so it keeps nobody "
        "out; give the key callers must send, like sandbox",
    )
    bad = unsendable_char(text)
    if bad is not None:
        msg = (
            f"the key holds {bad}, which the x-LSQ-AccessKey / x-LSQ-SecretKey headers cannot "
            "carry (the hub sends the keys there), so those calls would all be refused; use "
            "printable ASCII, like sandbox"
        )
        raise argparse.ArgumentTypeError(msg)
    return text


def sandbox_db(text: str) -> str:
    """A ``leadhub sandbox --db``, not empty: an empty one (a ``LEADHUB_DB=`` a template left
    blank, ``--db "$SANDBOX_DB"`` with the variable unset, ``sqlite:///`` with no path) kept
    the leads in memory, lost at the next stop, where ``serve`` refuses an empty ``--db``."""
    _not_empty(text.removeprefix("sqlite:///"), _EMPTY_SANDBOX_DB)
    return text


_EMPTY_SANDBOX_DB = (
    "an empty database would keep the sandbox's leads in memory, lost when it stops; give "
    "a SQLite file, like sandbox.db, or :memory: to mean memory"
)


def age(text: str) -> str:
    """An AGE such as ``2h`` or ``7d`` (a duration), kept as written: checked here so that a
    bad ``LEADHUB_<FLAG>`` is a usage error naming the variable. A number without its unit
    is refused (``--since 30`` listed the last 30 seconds, meant as days)."""
    if (number := unitless_age(text)) is not None:
        msg = f"{number!r} has no unit: {age_units_hint(number)}"
        raise argparse.ArgumentTypeError(msg)
    try:
        parse_duration(text)
    except UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def duration(text: str) -> float:
    """A DURATION such as ``30s`` or ``2m``, in seconds: checked here so that a bad
    ``LEADHUB_<FLAG>`` is a usage error naming the variable."""
    try:
        return parse_duration(text)
    except UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: Seconds a kept-alive connection may wait idle for its next request (``--keep-alive``).
#: Longer than the idle timeouts of what commonly reuses a connection to the hub, so that
#: those close it first: a load balancer in front (AWS's ALB 60 s, nginx's upstream
#: ``keepalive_timeout`` 60 s) or a sender's pool (httpx 5 s, aiohttp 15 s). At uvicorn's
#: 5 s, a client that sent a request on a connection just as the hub closed it got no answer
#: (a reset, a ``ReadError``; an ALB answers its sender 502): the soak test's senders, whose
#: pool kept idle connections as long as the hub did, lost a request that way now and then.
KEEP_ALIVE = "75s"
KEEP_ALIVE_MAX = 3600.0


def keep_alive(text: str) -> float:
    """``--keep-alive``: a DURATION from 1 s to an hour."""
    seconds = duration(text)
    if not 1 <= seconds <= KEEP_ALIVE_MAX:
        msg = f"{text!r} is out of range: give 1s to 1h (the default is {KEEP_ALIVE})"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def _keep_alive(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep-alive",
        type=keep_alive,
        default=KEEP_ALIVE,
        metavar="DURATION",
        help="how long an idle connection is kept open for its next request; make it longer "
        "than the idle timeout of a load balancer in front (default %(default)s)",
    )


def _log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default="info",
        help="lowest log level written",
    )


class Repeat(argparse.Action):
    """``action="append"`` for a flag whose variable may hold the list: flags replace it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        items = getattr(namespace, self.dest, None)
        items = list(items) if isinstance(items, list) else []  # not the variable's
        items.append(values)
        setattr(namespace, self.dest, items)


class Once(argparse.Action):
    """``store`` for a flag that takes one value where another command's flag of that name
    takes several (``purge --status dead --status unmatched``): given twice, it is a usage
    error naming both values, where the last one silently won (``replay --status dead
    --status unmatched`` requeued the unmatched events only, and said nothing of the dead).
    The same value twice, in any case, is that value (a state is read in any case)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given: dict[str, Any] = vars(namespace).setdefault("_given_once", {})
        if self.dest in given and str(given[self.dest]).lower() != str(values).lower():
            msg = (
                f"{option_string} takes one value, given {given[self.dest]!r} and then "
                f"{values!r}; run the command once for each"
            )
            parser.error(msg)
        given[self.dest] = values
        setattr(namespace, self.dest, values)


#: The attribute of parsed arguments that maps each flag's ``dest`` whose value came from its
#: ``LEADHUB_<FLAG>`` variable to that variable's name (see :func:`given_as`).
FROM_ENV = "from_env"


def given_as(args: argparse.Namespace, dest: str, flag: str) -> str:
    """What a command's message about ``dest``'s value calls it: ``flag``, or the
    ``LEADHUB_<FLAG>`` variable the value came from. A value the command itself refuses
    (``serve``'s ``--lease``, ``events``' ``--status``) is then found where it was set, by a
    user who typed no such flag."""
    from_env: Mapping[str, str] = getattr(args, FROM_ENV, None) or {}
    return from_env.get(dest, flag)


def variable_of(args: argparse.Namespace, dest: str) -> str | None:
    """The ``LEADHUB_<FLAG>`` variable that ``dest``'s value came from, or ``None`` (given as
    the flag, or the default): for a message about a value refused after parsing (a ``--db``
    URL that names no store), which must name the variable a user who typed no flag set."""
    from_env: Mapping[str, str] = getattr(args, FROM_ENV, None) or {}
    return from_env.get(dest)


#: The flags whose value is a key: a usage error names the variable it came from, never the
#: value (an empty one is shown: there is nothing to hide).
KEY_DESTS = frozenset({"access_key", "secret_key"})


class _FromEnv:
    """The default of a flag whose variable is set: its text, checked once parsing is done."""

    def __init__(self, var: str, text: str, default: Any) -> None:
        self.var = var
        self.text = text
        self.default = default  # what the flag means when the variable says no / lists nothing

    def __repr__(self) -> str:
        return f"{self.var}={self.text!r}"


def positional_default(environ: Mapping[str, str], flag: str, default: str) -> Any:
    """The default of a positional argument that ``flag``'s variable also gives (``check``'s
    DIR: ``LEADHUB_CONFIG_DIR``): the variable's text, checked by :class:`Parser` as the
    argument's own value would be, so that a bad one is a usage error naming it."""
    var = ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()
    return _FromEnv(var, environ[var], default) if var in environ else default


#: The ``sandbox`` flags whose value ``serve``'s embedded sandbox reads from a variable of its
#: own: the standalone sandbox takes that variable too when neither the flag nor its
#: ``LEADHUB_<FLAG>`` is given, so that the keys set for one are not silently the defaults in
#: the other.
SANDBOX_VARIABLES = {
    "--access-key": "LEADHUB_SANDBOX_ACCESS_KEY",
    "--secret-key": "LEADHUB_SANDBOX_SECRET_KEY",
    "--rate-limit": "LEADHUB_SANDBOX_RATE_LIMIT",
}


def sandbox_default(environ: Mapping[str, str], flag: str, default: str) -> Any:
    """The default of ``sandbox``'s ``flag``: its :data:`SANDBOX_VARIABLES` variable's text when
    set (``LEADHUB_<FLAG>``, read by :class:`Parser`, still comes first), checked as the flag's
    own value would be, so that an empty key there is a usage error naming it."""
    var = SANDBOX_VARIABLES[flag]
    return _FromEnv(var, environ[var], default) if var in environ else default


class Looked(Mapping[str, str]):
    """``environ``, remembering the names looked up in it (:attr:`names`): what a
    configuration's ``${NAME}`` (and ``NAME_FILE``) read, for :func:`unknown_variables`."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        return self.environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.environ)

    def __len__(self) -> int:
        return len(self.environ)


#: The ``LEADHUB_*`` variables ``serve`` reads that are no flag's: the embedded sandbox's
#: own, and the token ``GET /metrics`` requires (``hub.secrets.METRICS_TOKEN_VARIABLE``).
#: None has a ``_FILE`` form (the token's is refused by ``serve`` and ``check``).
OWN_VARIABLES = frozenset({*SANDBOX_VARIABLES.values(), METRICS_TOKEN_VARIABLE})


def flag_variables() -> frozenset[str]:
    """Every ``LEADHUB_*`` variable some command reads: each flag's ``LEADHUB_<FLAG>`` (of any
    command: one that lacks the flag ignores it), and :data:`OWN_VARIABLES`."""
    parser = build_parser({})
    names = set(OWN_VARIABLES)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                for flag in command._option_string_actions:
                    if flag.startswith("--") and flag not in ("--help", "--version"):
                        names.add(ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper())
    return frozenset(names)


def unknown_variables(environ: Mapping[str, str], read: Collection[str]) -> list[tuple[str, str]]:
    """The ``LEADHUB_*`` variables of ``environ`` that nothing reads, each with what to do: no
    flag's, not the sandbox's, and not ``read`` by the configuration (a ``${LEADHUB_TOKEN}``
    secret, or its ``LEADHUB_TOKEN_FILE``). A misspelt one (``LEADHUB_PURGE_AFTR=30d``) was
    ignored without a word, and the hub ran with the default it was meant to replace. Its
    value is never shown: it may be a secret meant for a ``${NAME}``."""
    flags = flag_variables()
    known = flags | {name for name in read if name.startswith(ENV_PREFIX)}
    # (a flag's LEADHUB_<FLAG>_FILE is refused by the commands that have the flag, and
    # LEADHUB_METRICS_TOKEN_FILE by serve and check; the sandbox's own variables have no
    # _FILE form, and are said so below)
    files = {f"{name}_FILE" for name in flags - set(SANDBOX_VARIABLES.values())}
    unknown: list[tuple[str, str]] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or name in files:
            continue
        base = name.removesuffix("_FILE")
        if base != name and base in known:
            fix = f"{base} is not read from a file; give the value in {base} itself"
        elif close := difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8):
            fix = f"did you mean {close[0]}? Rename it"
        else:
            fix = (
                "no flag's LEADHUB_<FLAG> (leadhub COMMAND --help names them) and no "
                "${NAME} in the configuration; unset it, or rename it to the one meant"
            )
        unknown.append((name, f"{name} is set, but nothing reads it (ignored): {fix}"))
    return unknown


#: What a flag takes, by its metavar, for one whose value may be written with a sign by
#: mistake (``--since -2h``): see :meth:`Parser._refuse_signed_values`.
TAKES = {"AGE": "an age like 2h or 30m", "DURATION": "a duration like 30s or 2m"}


class Parser(argparse.ArgumentParser):
    """An argument parser whose every flag also reads ``LEADHUB_<FLAG>`` from ``environ``.

    The variable's text becomes the flag's default; after parsing, a default still standing
    is converted and checked as the flag's own value would be (:meth:`parse_known_args`),
    so only the subcommand being run looks at its variables.
    """

    def __init__(self, *args: Any, environ: Mapping[str, str] | None = None, **kwargs: Any):
        # set before argparse's __init__, which adds --help through add_argument
        self.environ: Mapping[str, str] = environ or {}
        #: The ``LEADHUB_<FLAG>`` variables of this parser's flags whose ``_FILE`` is set.
        self.unread_files: list[str] = []
        kwargs.setdefault("epilog", ENV_RULES)
        super().__init__(*args, **kwargs)

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
        action = kwargs.get("action")
        if not name_or_flags[0].startswith("-") or action in ("help", "version"):
            return super().add_argument(*name_or_flags, **kwargs)
        if action == "append":
            kwargs["action"] = action = Repeat
        if action not in (None, "store", "store_true", "store_false", Repeat, Once):
            msg = f"{name_or_flags}: action {action!r} has no {ENV_PREFIX}<FLAG> reading"
            raise ValueError(msg)
        flag = next((name for name in name_or_flags if name.startswith("--")), None)
        if flag is None:
            msg = f"{name_or_flags}: a flag needs a --long name for its {ENV_PREFIX} variable"
            raise ValueError(msg)
        var = ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()
        if f"{var}_FILE" in self.environ:
            self.unread_files.append(var)
        if var in self.environ:
            implied = {"store_true": False, "store_false": True}.get(str(action))
            default = kwargs.get("default", implied)
            kwargs["default"] = _FromEnv(var, self.environ[var], default)
            kwargs.pop("required", None)
        kwargs["help"] = f"{kwargs.get('help', '')} [env {var}]".strip()
        return super().add_argument(*name_or_flags, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._refuse_signed_values(sys.argv[1:] if args is None else list(args))
        namespace, rest = super().parse_known_args(args, namespace)
        self._refuse_unread_files()
        # a subcommand's parser ran first and left its own in the namespace: add to them
        from_env = dict(getattr(namespace, FROM_ENV, None) or {})
        for action in self._actions:
            value = getattr(namespace, action.dest, None)
            if isinstance(value, _FromEnv):
                setattr(namespace, action.dest, self._from_env(action, value))
                from_env[action.dest] = value.var
        setattr(namespace, FROM_ENV, from_env)
        return namespace, rest

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """argparse's, saying the words it did not recognise as :func:`shown_words` shows
        them: argparse echoed them whole, and ``leadhub serve --db-url
        postgresql://hub:PASSWORD@db/leads`` (or ``--acess-key KEY``) printed the secret."""
        namespace, rest = self.parse_known_args(args, namespace)
        if rest:
            self.error(f"unrecognized arguments: {' '.join(shown_words(rest))}")
        return namespace

    def error(self, message: str) -> NoReturn:
        """argparse's usage error (exit 2), with the password of any URL in it masked as the
        store's messages mask it (:func:`hub.store.safe_url`): argparse quotes the words it
        refuses (``--s=postgresql://hub:PASSWORD@db/leads``: "ambiguous option"; a value given
        to a yes/no flag), and stderr is often a CI log or a support ticket."""
        super().error(_URL_WORD.sub(lambda found: _safe_word(found.group()), message))

    def _refuse_unread_files(self) -> None:
        """A usage error for a ``LEADHUB_<FLAG>_FILE`` set for a flag of this command: only
        ``${NAME}`` in the configuration is read from a ``NAME_FILE``, so it was ignored, and
        the image's own ``LEADHUB_DB`` (its SQLite file) served in place of the database URL
        a ``LEADHUB_DB_FILE`` named (a Docker or Kubernetes secret), without a word."""
        for var in self.unread_files:
            self.error(
                f"{var}_FILE is set, but {ENV_PREFIX}<FLAG> settings are not read from files "
                f"(only ${{NAME}} in the configuration is, from NAME_FILE): give the value "
                f"in {var} itself, or unset {var}_FILE"
            )

    def _refuse_signed_values(self, args: list[str]) -> None:
        """A usage error saying what the flag takes for a value starting with ``-`` given to
        a flag of :data:`TAKES` (``--since -2h``): argparse reads the value as a flag and
        says only "expected one argument". A value that is one of this parser's flags
        (``--since --json``) is left to argparse."""
        for flag, value in itertools.pairwise(args):
            if flag == "--":
                return
            action = self._option_string_actions.get(flag)
            if action is None or action.metavar not in TAKES:
                continue
            if value.startswith("-") and value not in self._option_string_actions:
                self.error(f"{flag} takes {TAKES[str(action.metavar)]}, not {value}")

    def _from_env(self, action: argparse.Action, env: _FromEnv) -> Any:
        if action.nargs == 0:  # store_true / store_false
            word = env.text.strip().lower()
            if word in TRUE_WORDS:
                return action.const
            if word in FALSE_WORDS:
                return env.default
            yes, no = ", ".join(TRUE_WORDS), ", ".join(FALSE_WORDS)
            self.error(f"{env!r}: not a yes/no value; use one of {yes} or {no}")
        if isinstance(action, Repeat):
            texts = [text for text in re.split(r"[\s,]+", env.text) if text]
            return [self._value(action, env, text) for text in texts] or env.default
        return self._value(action, env, env.text)

    def _value(self, action: argparse.Action, env: _FromEnv, text: str) -> Any:
        """``text`` converted and checked as argparse does a flag's value, else a usage error."""
        convert = action.type if callable(action.type) else str
        try:
            value = convert(text)
        except argparse.ArgumentTypeError as exc:
            shown = env.var if action.dest in KEY_DESTS and env.text.strip() else repr(env)
            self.error(f"{shown}: {exc}")
        except (TypeError, ValueError):
            name = getattr(convert, "__name__", repr(convert))
            self.error(f"{env!r}: invalid {name} value: {text!r}")
        if action.choices is not None and value not in action.choices:
            self.error(invalid_choice(env.var, env.text, value, action.choices))
        return value


#: A word of a message that may hold a password: a URL's ``user:password@``, or a
#: ``password=`` setting (in its query, or a ``key=value`` connection string).
_URL_WORD = re.compile(r"\S*(?:@|password=)\S*", re.IGNORECASE)


#: A word setting a password as an environment assignment does (``PGPASSWORD=...``, typed
#: on the command line after the flags): its value.
_PASSWORD_SETTING = re.compile(r"^(\w*password=).+", re.IGNORECASE | re.DOTALL)


def _safe_word(word: str) -> str:
    """``word`` with the password it may hold masked (:func:`hub.store.safe_url`)."""
    from hub.store import safe_url  # (only for a usage error)

    if _PASSWORD_SETTING.match(word):
        return _PASSWORD_SETTING.sub(r"\1***", word)
    try:
        return safe_url(word)
    except ValueError:  # a URL urllib refuses (an unclosed '[' in its host): all up to the
        # last '@' masked, which may mask more than the password, never less
        scheme = word[: word.find("://") + 3] if "://" in word else ""
        return f"{scheme}***@{word.rpartition('@')[2]}" if "@" in word else "***"


#: The words of a flag name that say its value is a secret (``--access-key``, and a
#: misspelling of it that argparse does not recognise).
_SECRET_FLAG = re.compile(r"^--?[\w-]*(?:key|secret|password|token)[\w-]*$", re.IGNORECASE)


def shown_words(words: Sequence[str]) -> list[str]:
    """Command-line ``words`` as a usage error may show them: the value of a flag whose name
    says it is a secret (a mistyped ``--acess-key KEY`` or ``--secret-kee=KEY``, a key that
    starts with ``-`` too) as ``***``, and each word that may hold a password masked whole
    (:func:`_safe_word`): :meth:`Parser.error` masks the words of the message, and a URL
    whose password holds a space is two of them (its first part was shown)."""
    shown = list(words)
    for place, word in enumerate(words):
        if "@" in word or "password=" in word.lower():
            shown[place] = _safe_word(word)
        name, equals, _ = word.partition("=")
        if not _SECRET_FLAG.match(name):
            continue
        if equals:
            shown[place] = f"{name}=***"
        elif place + 1 < len(words) and not words[place + 1].startswith("--"):
            shown[place + 1] = "***"
    return shown


def invalid_choice(var: str, text: str, value: Any, choices: Iterable[Any]) -> str:
    """A ``LEADHUB_<FLAG>`` (``var``, set to ``text``) whose ``value`` is none of the flag's
    ``choices``, said as the command's usage error says it (``check`` says serve's so)."""
    listed = ", ".join(map(repr, choices))
    return f"{var}={text!r}: invalid choice: {value!r} (choose from {listed})"


#: serve's ``--role`` values (``LEADHUB_ROLE``), read in any case.
ROLES = ("all", "web", "worker")
ROLE_VARIABLE = "LEADHUB_ROLE"


def role_problem(environ: Mapping[str, str]) -> str | None:
    """What ``serve`` refuses (exit 2) in ``LEADHUB_ROLE``, as it says it, or None: for
    ``check``, which said ok to ``LEADHUB_ROLE=bogus`` (or ``' web'``) in the environment
    serve then refused to start in."""
    text = environ.get(ROLE_VARIABLE)
    if text is None or text.lower() in ROLES:
        return None
    return invalid_choice(ROLE_VARIABLE, text, text.lower(), ROLES)


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The argument parser; ``environ`` supplies ``LEADHUB_*`` defaults."""
    parser = Parser(
        prog="leadhub",
        description="Lead Hub: lead webhooks in, LeadSquared leads out.",
        environ=environ,
    )
    parser.add_argument("--version", action="version", version=f"leadhub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, epilog: str = ENV_RULES) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = sub.add_parser(
            name, help=summary, environ=environ, epilog=epilog
        )
        return made

    serve = command("serve", "run the hub: webhook endpoints and dispatcher", SERVE_RULES)
    serve.add_argument(
        "--config-dir", type=directory, default="mappings", help="configuration directory"
    )
    serve.add_argument("--host", type=address, default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=port, default=8000, help="port to listen on")
    serve.add_argument("--db", default="sqlite:///leadhub.db", help="event store URL")
    serve.add_argument(
        "--role",
        type=str.lower,
        choices=ROLES,
        default="all",
        help="web: endpoints only; worker: dispatcher only; all: both",
    )
    _log_level(serve)
    serve.add_argument(
        "--log-json", action="store_true", default=False, help="JSON logs even on a terminal"
    )
    serve.add_argument(
        "--lease",
        default="60s",
        metavar="DURATION",
        help="how long a claimed event stays this worker's",
    )
    serve.add_argument(
        "--purge-after",
        default="off",
        metavar="AGE",
        help="delete delivered and skipped events this long after their last change, "
        "checked hourly by each worker (e.g. 30d; at least 3d), or 'off'",
    )

    serve.add_argument(
        "--store-wait",
        type=duration,
        default=None,
        metavar="DURATION",
        help="at start, keep trying to open a store that cannot be reached for this long "
        "(e.g. 2m; 0s: not at all); default 30s for PostgreSQL, 0s for SQLite",
    )

    _keep_alive(serve)

    sandbox = command("sandbox", "run the Lead.Capture sandbox on its own")
    sandbox.add_argument("--host", type=address, default="127.0.0.1", help="address to listen on")
    sandbox.add_argument("--port", type=port, default=9000, help="port to listen on")
    _keep_alive(sandbox)
    for flag, what in (("--access-key", "access key"), ("--secret-key", "secret key")):
        sandbox.add_argument(
            flag,
            type=sandbox_key,
            default=sandbox_default(environ, flag, "sandbox"),
            help=f"{what} the sandbox accepts (else {SANDBOX_VARIABLES[flag]}, as serve's "
            "embedded sandbox reads it; default sandbox)",
        )
    sandbox.add_argument(
        "--db", type=sandbox_db, default=None, help="SQLite file (in memory when absent)"
    )
    sandbox.add_argument(
        "--rate-limit",
        default=sandbox_default(environ, "--rate-limit", "25/5s"),
        help="calls per window per access key, or 'off' (else LEADHUB_SANDBOX_RATE_LIMIT, as "
        "serve's embedded sandbox reads it; default 25/5s)",
    )
    _log_level(sandbox)

    check = command("check", "validate a configuration directory")
    check.add_argument(
        "dir",
        nargs="?",
        type=directory,
        default=positional_default(environ, "--config-dir", "mappings"),
        help="configuration directory [env LEADHUB_CONFIG_DIR]",
    )

    try_ = command("try", "map one document as an endpoint would, without sending")
    try_.add_argument("endpoint", help="endpoint name")
    try_.add_argument(
        "payload",
        help="JSON document (as the endpoint's mappings see it), or with --content-type the "
        "body as the sender posts it; - reads standard input",
    )
    try_.add_argument(
        "--config-dir", type=directory, default="mappings", help="configuration directory"
    )
    try_.add_argument("--json", action="store_true", help="print one JSON object")
    try_.add_argument(
        "--content-type",
        metavar="TYPE",
        help="parse PAYLOAD as ingest parses a body sent with this Content-Type (e.g. "
        "application/x-www-form-urlencoded, or 'multipart/form-data; boundary=...'); "
        "default: JSON",
    )

    events = command("events", "list stored deliveries")
    events.add_argument("--db", default="sqlite:///leadhub.db", help="event store URL")
    events.add_argument("--status", action=Once, help="only events in this state")
    events.add_argument("--endpoint", help="only events of this endpoint")
    events.add_argument("--limit", type=int, default=50, help="at most this many (newest first)")
    events.add_argument(
        "--since",
        type=age,
        metavar="AGE",
        help="only events received in the last AGE (e.g. 2h, 7d)",
    )
    events.add_argument(
        "--id",
        action="append",
        dest="ids",
        type=event_id,
        metavar="ID",
        help="only this event (repeatable)",
    )
    events.add_argument("--json", action="store_true", help="one JSON object per line")

    replay = command(
        "replay",
        "queue dead, unmatched or skipped events again (delivered or retrying ones when named)",
    )
    replay.add_argument("--db", default="sqlite:///leadhub.db", help="event store URL")
    replay.add_argument(
        "--status",
        action=Once,
        type=str.lower,
        choices=["dead", "unmatched", "skipped", "delivered", "retrying"],
        help="events in state (only when named: delivered, to send those leads again, updating "
        "them; retrying, to try them now instead of at their next try)",
    )
    replay.add_argument(
        "--id",
        action="append",
        dest="ids",
        type=event_id,
        metavar="ID",
        help="event id (repeatable)",
    )
    replay.add_argument("--endpoint", help="only events of this endpoint")
    replay.add_argument(
        "--since",
        type=age,
        metavar="AGE",
        help="only events received in the last AGE (e.g. 2h, 7d)",
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="count the events instead of requeueing them"
    )

    purge = command("purge", "delete finished events older than an age")
    purge.add_argument("--db", default="sqlite:///leadhub.db", help="event store URL")
    purge.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="events last changed at least this long ago (e.g. 30d, 12h)",
    )
    purge.add_argument(
        "--status",
        action="append",
        dest="statuses",
        type=str.lower,
        choices=["delivered", "skipped", "dead", "unmatched"],
        help="events in this state (repeatable; default: delivered and skipped)",
    )
    purge.add_argument("--endpoint", help="only events of this endpoint")
    purge.add_argument(
        "--dry-run", action="store_true", help="count the events instead of deleting them"
    )

    backup = command("backup", "copy a SQLite event store, consistently, while the hub runs")
    backup.add_argument("--db", default="sqlite:///leadhub.db", help="event store URL")
    backup.add_argument("dest", metavar="DEST", help="the new file to write the copy to")

    vacuum = command(
        "vacuum",
        "compact a stopped SQLite event store and make its file shrink after purges from now on",
    )
    vacuum.add_argument("--db", default="sqlite:///leadhub.db", help="event store URL")

    return parser


class OutputFailed(OSError):
    """A command's standard output could not be written (a full disk, an I/O error, a closed
    standard output): see :class:`Output`."""


class Output:
    """Standard output while a command that prints its result runs: a write or flush that
    fails for another reason than a reader gone (:class:`BrokenPipeError`, see :func:`main`)
    raises :class:`OutputFailed`, which :func:`main` tells in one line. (``leadhub events
    --json > export.jsonl`` on a full disk was an OSError traceback from wherever the
    listing was.)"""

    def __init__(self, stream: Any) -> None:
        self.stream = stream  # None: standard output was closed (`leadhub events >&-`)

    def write(self, text: str) -> int:
        return int(self._guarded("write", text))

    def flush(self) -> None:
        self._guarded("flush")

    def _guarded(self, method: str, *args: Any) -> Any:
        if self.stream is None:
            raise OutputFailed(errno.EBADF, "standard output is closed")
        try:
            return getattr(self.stream, method)(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputFailed(exc.errno, exc.strerror or str(exc)) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


#: The error handler of a command's standard output (see :func:`main`).
OUTPUT_ERRORS = "leadhub-output"


def _output_errors(exc: UnicodeError) -> tuple[bytes, int]:
    """What a command's standard output writes for characters its encoding lacks (an ASCII
    locale, ``PYTHONIOENCODING=ascii``): a byte of a file name Python read with surrogate
    escapes as that byte, as ``surrogateescape`` writes it; any other character backslash
    escaped (``\\xe9``, ``\\u2026``), as Python's standard error writes it. (Strict, a
    sender's ``é`` in ``leadhub events`` or ``try`` was a UnicodeEncodeError traceback.)"""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = bytearray()
    for char in exc.object[exc.start : exc.end]:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(code - 0xDC00)
        else:
            out += char.encode("ascii", "backslashreplace")
    return bytes(out), exc.end


codecs.register_error(OUTPUT_ERRORS, _output_errors)
_NOT_ASCII = re.compile(r"[^\x00-\x7f]")
#: What JSON text holds besides printable ASCII and its own line breaks: characters in its
#: strings (JSON escapes the C0 controls there), each checked by :func:`_shown`.
_NOT_PLAIN = re.compile(r"[^\x20-\x7e\n]")


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _shown(match: re.Match[str]) -> str:
    """A character of a JSON string as itself if a terminal shows it so (``str.isprintable``,
    the rule the console log escapes by), else as its JSON escape."""
    return match.group() if match.group().isprintable() else _json_escape(match)


def json_text(text: str) -> str:
    """``text``, JSON, as a command writes it to standard output: as it is when standard
    output is Unicode (UTF-8, the usual case), but for the characters a terminal does not
    show as themselves (not ``str.isprintable``, as the console log judges: a sender's bidi
    override printed raw by ``try`` reordered the line it was on, and DEL, C1 controls and
    zero-width characters hide), each written as its JSON escape (``\\u202e``); else
    with each non-ASCII character so written (a surrogate pair beyond the BMP), so that
    ``--json`` is valid JSON meaning the same values under an ASCII locale too. JSON's
    non-ASCII characters and these are only ever in its strings, where the escapes mean
    them."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        unicode = codecs.lookup(encoding).name.startswith("utf")
    except LookupError:
        unicode = False
    return _NOT_PLAIN.sub(_shown, text) if unicode else _NOT_ASCII.sub(_json_escape, text)


#: The commands that serve until stopped, logging to standard output: a log line that cannot
#: be written is theirs to handle, not a command's result to report (see :class:`Output`).
SERVERS = ("serve", "sandbox")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run ``leadhub`` with ``argv``; returns the exit code.

    Ctrl-C (SIGINT) that no command handled itself (while the command's modules load, as
    ``check`` or ``try`` works, before ``serve`` listens) stops it with one line and exit
    130: it was a KeyboardInterrupt traceback. (``events``, ``replay``, ``purge``,
    ``backup`` and ``vacuum`` say what they had done; ``serve`` and ``sandbox``, once
    started, take SIGINT as their stop.)"""
    if sys.stderr is None:
        # Started with standard error closed (`2>&-`): print(..., file=sys.stderr) then
        # writes to standard output, and a note or error ended up among `events --json`'s
        # lines. They go nowhere instead; the exit code still tells.
        sys.stderr = open(os.devnull, "w", encoding="utf-8")
    try:
        return _main(argv, environ)
    except KeyboardInterrupt:
        return stopped(sys.argv[1:] if argv is None else argv)


def _main(argv: Sequence[str] | None, environ: Mapping[str, str] | None) -> int:
    env = os.environ if environ is None else environ
    args = build_parser(env).parse_args(argv)
    if args.command in SERVERS and sys.stdout is None:
        # (started with `>&-`: the log had nowhere to go, and the start was an AttributeError
        # traceback; a stream that fails later is the log writer's to ride out)
        print(
            f"leadhub {args.command}: cannot write its log: standard output is closed; "
            "send it to a file (> hub.log), or to /dev/null to keep none.",
            file=sys.stderr,
        )
        return 1
    if args.command in SERVERS:
        # A SIGHUP while serve loads its modules is remembered, for a reload once it has
        # started; the sandbox's is logged and ignored (its default action ended either
        # process: exit 129, no log line).
        from hub.hangups import remember_early

        remember_early()
    module_name = "try_" if args.command == "try" else args.command
    module = importlib.import_module(f"hub.commands.{module_name}")
    stdout = sys.stdout
    errors = getattr(stdout, "errors", None)
    if args.command not in SERVERS:
        sys.stdout = Output(stdout)  # (it writes and flushes as a stream does)
        if isinstance(stdout, io.TextIOWrapper):  # a character it cannot encode, escaped
            stdout.reconfigure(errors=OUTPUT_ERRORS)
    try:
        code: int = module.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`leadhub events | head`): stop quietly, as Unix tools do.
        # Point stdout at /dev/null so the interpreter's own flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    except OutputFailed as exc:
        if stdout is not None:  # what it still holds goes nowhere, not into an exit traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        print(f"leadhub {args.command}: cannot write its output: {exc.strerror}.", file=sys.stderr)
        return 1
    finally:
        sys.stdout = stdout
        if isinstance(stdout, io.TextIOWrapper) and errors and not stdout.closed:
            stdout.reconfigure(errors=errors)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
