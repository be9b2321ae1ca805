"""`leadhub`'s flags and their LEADHUB_<FLAG> variables, as users give them."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub import cli
from hub.cli import main
from tests.e2e.support import wait_until
from tests.e2e.test_reload import Log
from tests.mappings.cases import ROOT
from tests.support.server import free_port, leadhub_process, leadhub_run

Cap = pytest.CaptureFixture[str]

#: Positional arguments a subcommand needs before its flags can be parsed.
POSITIONALS = {"try": ["e", "doc.json"], "backup": ["copy.db"]}
#: Flags that stop a server command before it listens, should a port slip through unchecked.
NEVER_SERVE = {
    "serve": ["--config-dir", "/nonexistent/leadhub-config"],
    "sandbox": ["--rate-limit", "nonsense"],
}


def usage_error(capsys: Cap, argv: list[str], environ: dict[str, str]) -> str:
    """Run ``leadhub argv``, which must stop with argparse's usage error (exit 2); its stderr."""
    with pytest.raises(SystemExit) as info:
        main(argv, environ=environ)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def config_dir(tmp_path: Path) -> Path:
    """A configuration directory with one endpoint and one mapping, and a document for it."""
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "hub.yaml").write_text(
        "kind: endpoint\nname: e\nsource: token\ntoken: t\n---\n"
        "name: m\nendpoint: e\nfields:\n  EmailAddress: $.email\n"
    )
    (tmp_path / "doc.json").write_text('{"email": "a@example.com"}')
    return directory


@pytest.mark.parametrize(
    ("command", "value", "reason"),
    [
        ("serve", "abc", "invalid port value: 'abc'"),
        ("serve", "8000.0", "invalid port value: '8000.0'"),
        ("serve", "99999", "99999 is out of range; a port is 0 to 65535"),
        ("sandbox", "abc", "invalid port value: 'abc'"),
        ("sandbox", "-1", "-1 is out of range; a port is 0 to 65535"),
    ],
)
def test_a_bad_port_variable_is_a_usage_error(
    capsys: Cap, command: str, value: str, reason: str
) -> None:
    """A LEADHUB_PORT that is no port stops serve and sandbox with exit 2, naming the variable."""
    err = usage_error(capsys, [command, *NEVER_SERVE[command]], {"LEADHUB_PORT": value})
    assert f"usage: leadhub {command}" in err
    assert f"leadhub {command}: error: LEADHUB_PORT={value!r}: {reason}\n" in err


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["serve", "--port", "99999"], "argument --port: 99999 is out of range"),
        (["serve", "--port", "x"], "argument --port: invalid port value: 'x'"),
        (["sandbox", "--port", "65536"], "argument --port: 65536 is out of range"),
    ],
)
def test_a_port_flag_out_of_range_is_a_usage_error(
    capsys: Cap, argv: list[str], reason: str
) -> None:
    """--port takes 0 to 65535; anything else is refused rather than bound as another port."""
    assert reason in usage_error(capsys, [*argv, *NEVER_SERVE[argv[0]]], {})
    parser = cli.build_parser({})
    assert parser.parse_args(["serve", "--port", "0"]).port == 0
    assert parser.parse_args(["sandbox", "--port", "65535"]).port == 65535


def test_store_wait_is_a_checked_duration(capsys: Cap) -> None:
    """serve's --store-wait (LEADHUB_STORE_WAIT) is parsed as a duration, in seconds; unset,
    it is None (serve picks the default by store); a bad one is a usage error naming it."""
    parser = cli.build_parser({})
    assert parser.parse_args(["serve"]).store_wait is None
    assert parser.parse_args(["serve", "--store-wait", "2m"]).store_wait == 120.0
    env = {"LEADHUB_STORE_WAIT": "500ms"}
    assert cli.build_parser(env).parse_args(["serve"]).store_wait == 0.5
    err = usage_error(capsys, ["serve", *NEVER_SERVE["serve"]], {"LEADHUB_STORE_WAIT": "soon"})
    assert "LEADHUB_STORE_WAIT='soon': 'soon' is not a duration" in err
    err = usage_error(capsys, ["serve", "--store-wait=-1s", *NEVER_SERVE["serve"]], {})
    assert "argument --store-wait: '-1s' is not a duration" in err


def test_a_bad_variable_leaves_commands_without_the_flag_alone(tmp_path: Path, capsys: Cap) -> None:
    """Bad LEADHUB_PORT, _ROLE and _LOG_LEVEL concern serve and sandbox: check and try run."""
    environ = {"LEADHUB_PORT": "abc", "LEADHUB_ROLE": "bogus", "LEADHUB_LOG_LEVEL": "loud"}
    directory = config_dir(tmp_path)
    assert main(["check", str(directory)], environ=environ) == 0
    assert ": ok: 1 endpoint, 1 mapping" in capsys.readouterr().out
    argv = ["try", "e", str(tmp_path / "doc.json"), "--config-dir", str(directory), "--json"]
    assert main(argv, environ=environ) == 0
    assert '"status": "send"' in capsys.readouterr().out


def test_a_bad_role_variable_is_refused_before_the_store_is_opened(
    tmp_path: Path, capsys: Cap
) -> None:
    """LEADHUB_ROLE is checked against serve's roles: exit 2, and no database is made."""
    db = tmp_path / "hub.db"
    argv = ["serve", "--config-dir", str(config_dir(tmp_path)), "--db", f"sqlite:///{db}"]
    err = usage_error(capsys, argv, {"LEADHUB_ROLE": "bogus"})
    expected = "LEADHUB_ROLE='bogus': invalid choice: 'bogus' (choose from 'all', 'web', 'worker')"
    assert f"leadhub serve: error: {expected}\n" in err
    assert not db.exists()


def test_role_is_read_in_any_case() -> None:
    """--role (or LEADHUB_ROLE) is read in any case, as --log-level and --status are: serve
    refused LEADHUB_ROLE=Web (exit 2) that check, in the same environment, judged as web."""
    assert cli.build_parser({"LEADHUB_ROLE": "Web"}).parse_args(["serve"]).role == "web"
    parser = cli.build_parser({})
    assert parser.parse_args(["serve", "--role", "WORKER"]).role == "worker"


@pytest.mark.parametrize("command", ["serve", "sandbox"])
def test_log_level_takes_the_four_levels(tmp_path: Path, capsys: Cap, command: str) -> None:
    """--log-level (or LEADHUB_LOG_LEVEL) is debug, info, warning or error, in any case."""
    choices = "(choose from 'debug', 'info', 'warning', 'error')"
    err = usage_error(capsys, [command, "--log-level", "bogus"], {})
    assert f"argument --log-level: invalid choice: 'bogus' {choices}" in err
    err = usage_error(capsys, [command], {"LEADHUB_LOG_LEVEL": "verbose"})
    assert f"LEADHUB_LOG_LEVEL='verbose': invalid choice: 'verbose' {choices}" in err
    parser = cli.build_parser({"LEADHUB_LOG_LEVEL": "ERROR"})
    assert parser.parse_args([command]).log_level == "error"
    assert parser.parse_args([command, "--log-level", "Warning"]).log_level == "warning"


@pytest.mark.parametrize(
    ("word", "value"),
    [(w, True) for w in ("1", "true", "yes", "on", "YES", " On ")]
    + [(w, False) for w in ("0", "false", "no", "off", "False")],
)
def test_yes_no_variables(word: str, value: bool) -> None:
    """A yes/no flag's variable takes 1/true/yes/on or 0/false/no/off, in any case."""
    parser = cli.build_parser({"LEADHUB_JSON": word, "LEADHUB_LOG_JSON": word})
    assert parser.parse_args(["events"]).json is value
    assert parser.parse_args(["serve"]).log_json is value
    assert parser.parse_args(["events", "--json"]).json is True  # the flag wins


@pytest.mark.parametrize("word", ["", "maybe", "2", "y"])
def test_other_yes_no_words_are_usage_errors(capsys: Cap, word: str) -> None:
    """Anything else in a yes/no variable is refused, naming it and the words it takes."""
    err = usage_error(capsys, ["events"], {"LEADHUB_JSON": word})
    assert f"leadhub events: error: LEADHUB_JSON={word!r}: not a yes/no value; use one of " in err
    assert "1, true, yes, on or 0, false, no, off" in err


def test_repeatable_variables_are_lists() -> None:
    """A repeatable flag's variable is a list split on commas and spaces, each item checked
    like the flag's value; flags given on the command line replace the list."""
    parser = cli.build_parser({"LEADHUB_ID": " 3, 7 9,"})
    assert parser.parse_args(["events"]).ids == [3, 7, 9]
    assert parser.parse_args(["replay", "--id", "5", "--id", "6"]).ids == [5, 6]
    parser = cli.build_parser({"LEADHUB_STATUS": "dead unmatched"})
    args = parser.parse_args(["purge", "--older-than", "30d"])
    assert args.statuses == ["dead", "unmatched"]
    args = parser.parse_args(["purge", "--older-than", "30d", "--status", "skipped"])
    assert args.statuses == ["skipped"]
    assert cli.build_parser({"LEADHUB_ID": " , "}).parse_args(["replay"]).ids is None


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (
            ["replay"],
            {"LEADHUB_ID": "3,x"},
            "LEADHUB_ID='3,x': 'x' is not an event id (a whole number, as leadhub events shows)",
        ),
        (
            ["purge", "--older-than", "30d"],
            {"LEADHUB_STATUS": "dead,queued"},
            "LEADHUB_STATUS='dead,queued': invalid choice: 'queued' (choose from "
            "'delivered', 'skipped', 'dead', 'unmatched')",
        ),
        (["events"], {"LEADHUB_LIMIT": "ten"}, "LEADHUB_LIMIT='ten': invalid int value: 'ten'"),
    ],
)
def test_bad_list_and_number_variables_are_usage_errors(
    capsys: Cap, argv: list[str], environ: dict[str, str], message: str
) -> None:
    """Each item of a list variable, and a number variable, is checked as the flag's is."""
    assert f"error: {message}\n" in usage_error(capsys, argv, environ)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser, by name."""
    parser = cli.build_parser({})
    (found,) = [a.choices for a in parser._actions if isinstance(a.choices, dict)]
    return dict(found)


def sample(action: argparse.Action) -> str:
    """A value the flag takes that is not its default."""
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return next(str(c) for c in action.choices if c != action.default)
    if action.type is cli.age:
        return "7d"  # (an age needs its unit)
    return "7" if action.type is not None else "from-env"


def test_every_flag_of_every_command_has_its_variable() -> None:
    """For each flag of each subcommand, LEADHUB_<FLAG> gives what the flag gives, and --help
    names the variable and the rules (so a flag added later cannot go without one)."""
    flags_seen = 0
    for name, parser in subcommands().items():
        help_text = " ".join(parser.format_help().split())
        assert "Every flag can also be set as LEADHUB_<FLAG>" in help_text
        assert "repeatable flags take a list separated by commas or spaces" in help_text
        flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
        for action in flags:
            flags_seen += 1
            flag = max(action.option_strings, key=len)
            var = "LEADHUB_" + flag.removeprefix("--").replace("-", "_").upper()
            assert f"[env {var}]" in help_text, (name, flag)
            needed = POSITIONALS.get(name, [])
            for other in flags:  # the other required flags, given as flags
                if other.required and other is not action:
                    needed = [*needed, other.option_strings[0], sample(other)]
            given = [flag] if action.nargs == 0 else [flag, sample(action)]
            by_flag = cli.build_parser({}).parse_args([name, *needed, *given])
            text = "yes" if action.nargs == 0 else sample(action)
            by_var = cli.build_parser({var: text}).parse_args([name, *needed])
            want: Any = getattr(by_flag, action.dest)
            assert getattr(by_var, action.dest) == want, (name, flag)
            if not action.required:
                unset = cli.build_parser({}).parse_args([name, *needed])
                assert getattr(unset, action.dest) != want, (name, flag)
    assert flags_seen >= 30


@pytest.mark.slow
def test_bad_variables_as_a_real_subprocess(tmp_path: Path) -> None:
    """`python -m hub` with a bad LEADHUB_PORT: serve exits 2 with the usage error and no
    traceback, while check runs as usual (exit 0)."""
    directory = config_dir(tmp_path)
    env = {**os.environ, "LEADHUB_PORT": "abc", "LEADHUB_CONFIG_DIR": str(directory)}
    options: dict[str, Any] = {
        "cwd": ROOT,
        "capture_output": True,
        "text": True,
        "timeout": 60,
        "check": False,
        "env": env,
    }
    serve = subprocess.run([sys.executable, "-m", "hub", "serve"], **options)
    assert serve.returncode == 2
    assert "leadhub serve: error: LEADHUB_PORT='abc': invalid port value: 'abc'" in serve.stderr
    assert "Traceback" not in serve.stderr
    check = subprocess.run([sys.executable, "-m", "hub", "check"], **options)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Traceback" not in check.stderr


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--lease", "soon"], {}, "--lease: 'soon' is not a duration"),
        ([], {"LEADHUB_LEASE": "soon"}, "LEADHUB_LEASE: 'soon' is not a duration"),
        ([], {"LEADHUB_LEASE": "0s"}, "LEADHUB_LEASE: '0s' is too short for a lease"),
        (["--lease", "2s"], {}, "--lease 2s is too short: a call to target 'default'"),
        ([], {"LEADHUB_LEASE": "2s"}, "LEADHUB_LEASE=2s is too short: a call to target"),
        (["--purge-after", "1d"], {}, "--purge-after: '1d' is shorter than senders retry"),
        ([], {"LEADHUB_PURGE_AFTER": "1d"}, "LEADHUB_PURGE_AFTER: '1d' is shorter than"),
        ([], {"LEADHUB_PURGE_AFTER": "monthly"}, "LEADHUB_PURGE_AFTER: 'monthly' is not a"),
    ],
)
def test_serve_names_where_a_refused_value_was_set(
    tmp_path: Path, capsys: Cap, argv: list[str], environ: dict[str, str], message: str
) -> None:
    """A lease or purge age that serve refuses (exit 2) is named as it was given: the flag,
    or the LEADHUB_* variable. (It always said '--lease' / '--purge-after', so a variable set
    in a shared environment or a container's env file sent the user looking for a flag that
    was never typed.)"""
    db = tmp_path / "hub.db"
    base = ["serve", "--config-dir", str(config_dir(tmp_path)), "--port", "0"]
    assert main([*base, "--db", f"sqlite:///{db}", *argv], environ=environ) == 2
    err = capsys.readouterr().err
    assert f"leadhub serve: {message}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["events", "--limit", "0"], {}, "--limit must be at least 1, got 0."),
        (["events"], {"LEADHUB_LIMIT": "0"}, "LEADHUB_LIMIT must be at least 1, got 0."),
        (["events", "--status", "daed"], {}, "unknown --status 'daed'; use one of queued"),
        (["events"], {"LEADHUB_STATUS": "daed"}, "unknown LEADHUB_STATUS 'daed'; use one of"),
        (["purge", "--older-than", "x"], {}, "--older-than: 'x' is not a duration"),
        (["purge"], {"LEADHUB_OLDER_THAN": "x"}, "LEADHUB_OLDER_THAN: 'x' is not a duration"),
    ],
)
def test_store_commands_name_where_a_refused_value_was_set(
    tmp_path: Path, capsys: Cap, argv: list[str], environ: dict[str, str], message: str
) -> None:
    """events and purge name a value they refuse (exit 2, before opening any store) as it was
    given: the flag, or the LEADHUB_* variable (it always said the flag)."""
    db = tmp_path / "none.db"
    assert main([*argv, "--db", f"sqlite:///{db}"], environ=environ) == 2
    assert f"leadhub {argv[0]}: {message}" in capsys.readouterr().err
    assert not db.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["events"],
        ["replay", "--status", "dead"],
        ["purge", "--older-than", "3d"],
        ["backup", "c.db"],
    ],
)
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("leadhub.db", "Unknown event store URL 'leadhub.db'"),
        ("postgresql://hub:hunter2@[::1/leadhub", "Malformed store URL"),
    ],
)
def test_a_store_url_variable_that_names_no_store_is_named(
    tmp_path: Path,
    capsys: Cap,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    url: str,
    says: str,
) -> None:
    """A LEADHUB_DB that names no store (a bare path, as a container's env file may hold it)
    is a usage error (exit 2) naming LEADHUB_DB, as any bad variable is; it named no variable,
    so a user who typed no --db looked for one. Given as --db, the message is as it was."""
    monkeypatch.chdir(tmp_path)  # (backup's copy, were it made, would land here)
    assert main(argv, environ={"LEADHUB_DB": url}) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"leadhub {argv[0]}: LEADHUB_DB: {says}"), err
    assert "hunter2" not in err
    assert main([*argv, "--db", url], environ={"LEADHUB_DB": "sqlite:///x.db"}) == 2
    assert capsys.readouterr().err.startswith(f"leadhub {argv[0]}: {says}")
    assert not list(tmp_path.iterdir())


def test_serve_names_a_store_url_variable_that_names_no_store(tmp_path: Path) -> None:
    """serve, as run in a container whose env file sets LEADHUB_DB to a path: exit 2, the
    variable named, before the port is taken."""
    done = leadhub_run(
        ["serve", "--config-dir", str(config_dir(tmp_path))],
        env={"LEADHUB_DB": "/data/leadhub.db", "LEADHUB_PORT": "0"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "leadhub serve: LEADHUB_DB: Unknown event store URL '/data/leadhub.db'; use "
        "sqlite:///relative.db, sqlite:////absolute/path.db or postgresql://user@host:5432/dbname "
        "(the scheme postgresql:// or postgres://, without a driver's +asyncpg or +psycopg)."
    )


def test_given_as_reads_what_the_parser_recorded() -> None:
    """The parser records which values came from variables, the subcommand's included."""
    parser = cli.build_parser({"LEADHUB_LEASE": "90s", "LEADHUB_DB": "sqlite:///x.db"})
    args = parser.parse_args(["serve", "--db", "sqlite:///y.db"])
    assert cli.given_as(args, "lease", "--lease") == "LEADHUB_LEASE"
    assert cli.given_as(args, "db", "--db") == "--db"  # the flag won
    assert cli.given_as(argparse.Namespace(), "lease", "--lease") == "--lease"


@pytest.mark.parametrize("command", ["serve", "sandbox"])
@pytest.mark.parametrize("environ", [{"LEADHUB_HOST": ""}, {"LEADHUB_HOST": "  "}, {}])
def test_an_empty_host_is_refused_not_every_interface(
    capsys: Cap, environ: dict[str, str], command: str
) -> None:
    """An empty --host (or LEADHUB_HOST left empty by a template) is a usage error: bound as
    given it listened on every interface while the hub_ready line said 127.0.0.1 (and the
    sandbox's sandbox_ready line)."""
    argv = [command, *NEVER_SERVE[command]]
    if not environ:
        argv += ["--host", ""]
    err = usage_error(capsys, argv, environ)
    assert "an empty address would listen on every interface" in err
    if environ:
        assert f"LEADHUB_HOST={environ['LEADHUB_HOST']!r}" in err


@pytest.mark.parametrize(
    ("argv", "environ", "given"),
    [
        (["check"], {"LEADHUB_CONFIG_DIR": ""}, "LEADHUB_CONFIG_DIR=''"),
        (["check", ""], {}, "argument dir"),
        (["serve"], {"LEADHUB_CONFIG_DIR": " "}, "LEADHUB_CONFIG_DIR=' '"),
        (["serve", "--config-dir", ""], {}, "argument --config-dir"),
        (["try", "e", "doc.json"], {"LEADHUB_CONFIG_DIR": ""}, "LEADHUB_CONFIG_DIR=''"),
    ],
)
def test_an_empty_config_dir_is_a_usage_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Cap,
    argv: list[str],
    environ: dict[str, str],
    given: str,
) -> None:
    """An empty configuration directory (a LEADHUB_CONFIG_DIR a template left blank) is a
    usage error naming where it was given: it was read as the current directory, whose
    stray *.yaml files (a docker-compose.yaml) were then loaded as the hub's configuration,
    and reported as ': 1 error' with no directory named."""
    (tmp_path / "docker-compose.yaml").write_text("services: {}\n")
    monkeypatch.chdir(tmp_path)
    err = usage_error(capsys, argv, environ)
    assert f"{given}: an empty directory name would read the current directory" in err
    assert "docker-compose.yaml" not in err


def test_the_config_dir_variable_is_checks_dir(tmp_path: Path, capsys: Cap) -> None:
    """check's DIR still comes from LEADHUB_CONFIG_DIR when not given, and DIR wins."""
    directory = config_dir(tmp_path)
    assert main(["check"], environ={"LEADHUB_CONFIG_DIR": str(directory)}) == 0
    assert f"{directory}: ok: 1 endpoint" in capsys.readouterr().out
    environ = {"LEADHUB_CONFIG_DIR": "/nonexistent/leadhub-config"}
    assert main(["check", str(directory)], environ=environ) == 0
    assert f"{directory}: ok: 1 endpoint" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["events", "--since", "-2h"], "leadhub events: error: --since takes an age like 2h or "),
        (["replay", "--since", "-1d"], "leadhub replay: error: --since takes an age like 2h or "),
        (["purge", "--older-than", "-30d"], "leadhub purge: error: --older-than takes an age "),
        (["serve", "--store-wait", "-5s"], "leadhub serve: error: --store-wait takes a duration "),
        (["serve", "--lease", "-1m"], "leadhub serve: error: --lease takes a duration like 30s "),
        (["serve", "--purge-after", "-30d"], "leadhub serve: error: --purge-after takes an age "),
    ],
)
def test_a_signed_age_or_duration_says_what_the_flag_takes(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    """``python -m hub events --since -2h``: argparse read ``-2h`` as a flag and said only
    "argument --since: expected one argument". Each flag taking an age or a duration says
    what it takes and what it was given instead (exit 2), before anything is opened; a flag
    given as the value (``--since --json``) is still argparse's to refuse."""
    db = tmp_path / "never.db"
    done = subprocess.run(
        [sys.executable, "-m", "hub", *argv, "--db", f"sqlite:///{db}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(message) and last.endswith(f", not {argv[-1]}"), last
    assert "expected one argument" not in done.stderr and "Traceback" not in done.stderr
    assert not db.exists()
    flag = subprocess.run(
        [sys.executable, "-m", "hub", argv[0], argv[1], "--db", f"sqlite:///{db}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert flag.returncode == 2
    assert f"argument {argv[1]}: expected one argument" in flag.stderr


def test_a_flag_variable_given_as_a_file_is_a_usage_error(tmp_path: Path, capsys: Cap) -> None:
    """``LEADHUB_DB_FILE`` (a database URL as a Docker or Kubernetes secret, the way
    ``${NAME}`` secrets are given): not read, it left the image's ``LEADHUB_DB`` (its SQLite
    file) in use, and ``serve`` ran on that store without a word. Refused, naming both
    variables; a command without the flag (``check``) is left alone."""
    url = tmp_path / "url"
    url.write_text("postgresql://hub:secret@db/leads\n")
    image = {"LEADHUB_DB": f"sqlite:///{tmp_path}/leadhub.db", "LEADHUB_DB_FILE": str(url)}
    err = usage_error(capsys, ["serve", *NEVER_SERVE["serve"]], image)
    assert "LEADHUB_DB_FILE is set" in err
    assert "give the value in LEADHUB_DB itself, or unset LEADHUB_DB_FILE" in err
    assert "secret" not in err
    err = usage_error(capsys, ["events"], {"LEADHUB_PURGE_AFTER_FILE": str(url), **image})
    assert "LEADHUB_DB_FILE is set" in err and "PURGE_AFTER" not in err  # (not an events flag)
    assert main(["check", str(config_dir(tmp_path))], environ=image) == 0


#: A configuration whose token is the variable LEADHUB_FORMS_TOKEN (a legitimate LEADHUB_*
#: name no flag has) and whose HMAC secret comes from LEADHUB_SIGNING_FILE's file.
NAMED_SECRETS = (
    "kind: endpoint\nname: e\nsource: token\ntoken: ${LEADHUB_FORMS_TOKEN}\n---\n"
    "kind: endpoint\nname: h\nsource: hmac\nsecret: ${LEADHUB_SIGNING}\n"
    "header: X-Sig\n---\n"
    "name: m\nendpoint: e\nfields:\n  EmailAddress: $.email\n---\n"
    "name: n\nendpoint: h\nfields:\n  EmailAddress: $.email\n"
)


def named_secrets(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A configuration reading two LEADHUB_* secrets, and the environment that sets them."""
    directory = tmp_path / "named"
    directory.mkdir()
    (directory / "hub.yaml").write_text(NAMED_SECRETS)
    (secret := tmp_path / "signing").write_text("s3cret-signing-key\n")
    return directory, {"LEADHUB_FORMS_TOKEN": "t0ken-value", "LEADHUB_SIGNING_FILE": str(secret)}


def test_check_warns_of_leadhub_variables_nothing_reads(
    tmp_path: Path, capsys: Cap, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt LEADHUB_* variable (LEADHUB_PURGE_AFTR=30d) was ignored without a word and
    serve ran with the default it was meant to replace (no purge at all). check names it with
    the closest known name, never its value; the flags' variables of any command, the
    sandbox's own and the ones the configuration reads (${LEADHUB_FORMS_TOKEN}, the file of
    LEADHUB_SIGNING_FILE) are no warning."""
    directory, secrets = named_secrets(tmp_path)
    for name in [k for k in os.environ if k.startswith("LEADHUB_")]:
        monkeypatch.delenv(name)
    legitimate = {
        **secrets,
        "LEADHUB_STATUS": "dead",  # (events' flag: ignored by check, as documented)
        "LEADHUB_SANDBOX_RATE_LIMIT": "off",
        "LEADHUB_LOG_LEVEL": "info",
    }
    for name, value in legitimate.items():
        monkeypatch.setenv(name, value)
    assert main(["check", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "warning:" not in out and "0 warnings" in out, out
    misspelt = {
        "LEADHUB_PURGE_AFTR": "value-one",
        "LEADHUB_LEASES": "value-two",
        "LEADHUB_FROMS_TOKEN": "value-three",
        "LEADHUB_NOTHING_LIKE_IT": "value-four",
        "LEADHUB_SANDBOX_ACCESS_KEY_FILE": "value-five",  # (the sandbox reads no file)
    }
    for name, value in misspelt.items():
        monkeypatch.setenv(name, value)
    assert main(["check", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "warning: LEADHUB_PURGE_AFTR is set, but nothing reads it (ignored): did you" in out
    assert "did you mean LEADHUB_PURGE_AFTER?" in out
    assert "did you mean LEADHUB_LEASE?" in out
    assert "did you mean LEADHUB_FORMS_TOKEN?" in out  # (a name the configuration reads)
    assert "LEADHUB_NOTHING_LIKE_IT is set, but nothing reads it (ignored): no flag's" in out
    assert (
        "LEADHUB_SANDBOX_ACCESS_KEY_FILE is set, but nothing reads it (ignored): "
        "LEADHUB_SANDBOX_ACCESS_KEY is not read from a file; give the value in "
        "LEADHUB_SANDBOX_ACCESS_KEY itself"
    ) in out
    assert "5 warnings" in out
    assert not any(value in out for value in misspelt.values())
    # With errors too (the typo that left ${LEADHUB_FORMS_TOKEN} unset), after them.
    monkeypatch.delenv("LEADHUB_FORMS_TOKEN")
    assert main(["check", str(directory)]) == 1
    out = capsys.readouterr().out
    assert "${LEADHUB_FORMS_TOKEN} is not set" in out
    assert "warning: LEADHUB_FROMS_TOKEN is set" in out
    assert "did you mean LEADHUB_FORMS_TOKEN?" in out


@pytest.mark.slow
def test_serve_logs_leadhub_variables_nothing_reads(tmp_path: Path) -> None:
    """serve, as a real process: one variable_unknown warning per LEADHUB_* variable nothing
    reads, naming the closest known one and never the value; the variables the
    configuration reads are no warning. A configuration refused for the ${VAR} the typo left
    unset says so beside its errors."""
    directory, secrets = named_secrets(tmp_path)
    port = free_port()
    args = ["serve", "--config-dir", str(directory), "--port", str(port)]
    args += ["--db", f"sqlite:///{tmp_path / 'hub.db'}", "--log-json"]
    env = {**secrets, "LEADHUB_PURGE_AFTR": "30d-value", "LEADHUB_STATUS": "dead"}
    with leadhub_process(args, ready_url=f"http://127.0.0.1:{port}/readyz", env=env) as proc:
        log = Log(proc)
        wait_until(lambda: bool(log.events("hub_ready")), what="the ready line")
        (said,) = log.events("variable_unknown")
        assert said["level"] == "warning"
        assert said["variable"] == "LEADHUB_PURGE_AFTR"
        assert "did you mean LEADHUB_PURGE_AFTER?" in said["message"]
        assert not any("30d-value" in line for line in map(str, log.lines))
    del env["LEADHUB_FORMS_TOKEN"]
    env["LEADHUB_FROMS_TOKEN"] = "t0ken-value"
    done = leadhub_run(args, env=env, leadhub_env=False)
    assert done.returncode == 2
    assert "${LEADHUB_FORMS_TOKEN} is not set" in done.stderr
    assert "warning: LEADHUB_FROMS_TOKEN is set, but nothing reads it" in done.stderr
    assert "did you mean LEADHUB_FORMS_TOKEN?" in done.stderr
    assert "t0ken-value" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("argv", "environ", "said"),
    [
        (["serve"], {"LEADHUB_HOST": "0.0.0.0\r"}, "LEADHUB_HOST='0.0.0.0\\r': the address ends"),
        (["sandbox"], {"LEADHUB_HOST": " 127.0.0.1"}, "the address starts with a space; remove"),
        (["serve", "--host", "127.0.0.1 "], {}, "argument --host: the address ends with a space"),
        (["serve"], {"LEADHUB_CONFIG_DIR": "{dir}\r"}, "the directory name ends with a carriage"),
        (["check"], {"LEADHUB_CONFIG_DIR": "{dir}\r"}, "LEADHUB_CONFIG_DIR='{dir}\\r': the dir"),
        (["check", "{dir}\t"], {}, "argument dir: the directory name ends with a tab; remove it"),
    ],
)
def test_a_host_or_directory_with_a_blank_around_it_is_a_usage_error(
    tmp_path: Path, capsys: Cap, argv: list[str], environ: dict[str, str], said: str
) -> None:
    """An env file saved with Windows line endings (docker run --env-file keeps the \\r) gave
    LEADHUB_CONFIG_DIR=/config\\r, refused as "/config\\r: not a directory", which a terminal
    shows with the name hidden by the carriage return, and LEADHUB_HOST=0.0.0.0\\r a "startup
    failed: cannot listen ... Name or service not known" (exit 1). A usage error now names
    the variable and the character, and for a \\r the line endings."""
    directory = str(config_dir(tmp_path))
    argv = [arg.replace("{dir}", directory) for arg in argv]
    if "LEADHUB_HOST" in environ or "--host" in argv:  # (should the address pass, no serving)
        argv += NEVER_SERVE[argv[0]]
    environ = {k: v.replace("{dir}", directory) for k, v in environ.items()}
    err = usage_error(capsys, argv, environ)
    assert said.replace("{dir}", directory) in err
    if "\r" in "".join(environ.values()):
        assert "an env file saved with Windows line endings? Save it with Unix (LF) ones" in err


def test_a_directory_whose_name_has_a_blank_around_it_is_read(tmp_path: Path, capsys: Cap) -> None:
    """A directory that is named so, blank and all, is no mistake: read as given."""
    named = tmp_path / "config "
    config_dir(tmp_path).rename(named)
    assert main(["check", str(named)], environ={}) == 0
    assert ": ok: 1 endpoint" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "said"),
    [
        # a misspelt flag: argparse lists it, and its value, as unrecognized
        (["serve", "--db-url", "postgresql://hub:S3CRET@db/leads"], "--db-url postgresql://hub"),
        (["events", "--dbx=hub:S3CRET@db/leads"], "unrecognized arguments: --dbx=hub"),
        (["purge", "--older-than", "30d", "--dbx", "postgresql://db/l?password=S3CRET"], "--dbx"),
        (["replay", "--dbx", "postgresql://hub:p@S3CRET@[db/leads"], "--dbx postgresql://"),
        # a prefix of two flags: argparse quotes the whole word, value and all
        (["events", "--s=postgresql://hub:S3CRET@db/leads"], "ambiguous option: --s="),
        # a value given to a yes/no flag
        (["events", "--json=postgresql://hub:S3CRET@db/leads"], "ignored explicit argument"),
        # a misspelt key flag of the sandbox
        (["sandbox", "--acess-key", "S3CRET"], "unrecognized arguments: --acess-key ***"),
        (["sandbox", "--secret-kee=S3CRET", "--bogus"], "--secret-kee=*** --bogus"),
        (["sandbox", "--acess-key", "-S3CRET"], "unrecognized arguments: --acess-key ***"),
        # a password with a raw space (two words of the message), a password setting
        (["serve", "--dbx", "postgresql://hub:S3 CRET@db/leads"], "--dbx postgresql://hub:***@"),
        (["serve", "--dbx", "postgresql://hub:S3CRET @db/leads"], "--dbx postgresql://hub:***@"),
        (["events", "PGPASSWORD=S3CRET"], "unrecognized arguments: PGPASSWORD=***"),
    ],
)
def test_a_usage_error_never_shows_a_password_or_key_given_on_the_command_line(
    args: list[str], said: str
) -> None:
    """A usage error quoting a word that holds a password (a URL's ``user:password@``, its
    ``?password=``) or the value of a misspelt key flag masks it, as the store's messages
    do, and still says what was wrong: argparse echoed the words whole to stderr."""
    result = leadhub_run(args)
    assert result.returncode == 2, result.stderr
    assert "S3CRET" not in result.stderr and "CRET" not in result.stderr
    assert said in result.stderr
    assert "***" in result.stderr
    assert "Traceback" not in result.stderr


#: Runs ``python -m hub`` after the first argument is taken off as a module name: SIGINT
#: (Ctrl-C) reaches the process as that module is looked for, whenever that is.
INTERRUPTED_AT_IMPORT = """
import os, runpy, signal, sys
module = sys.argv.pop(1)
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a shell starts a command
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            os.kill(os.getpid(), signal.SIGINT)
sys.meta_path.insert(0, Interrupt())
sys.argv[0] = "leadhub"
runpy.run_module("hub", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    ("module", "command"),
    [
        ("hub.cli", ["check", "mappings"]),  # as Python loads the command line itself
        ("hub.config", ["check", "mappings"]),  # as check works
        ("hub.mapping", ["try", "zapier", "tests/fixtures/zapier/post_json_flat.json"]),
        ("hub.commands.events", ["events", "--db", "sqlite:///{tmp}/hub.db"]),  # loading it
        ("hub.commands.purge", ["purge", "--db", "sqlite:///{tmp}/hub.db", "--older-than", "9d"]),
        ("hub.commands.serve", ["serve", "--db", "sqlite:///{tmp}/hub.db", "--port", "0"]),
        ("hub.commands.sandbox", ["sandbox", "--port", "0"]),
    ],
)
def test_ctrl_c_before_a_command_handles_it_is_one_line(
    tmp_path: Path, module: str, command: list[str]
) -> None:
    """Ctrl-C while a command's modules load (half a second and more on a busy machine), or
    as `check` or `try` works, was a KeyboardInterrupt traceback: it is one line naming the
    command, exit 130 as a shell reports SIGINT. A real process, interrupted by a real
    signal at a set point of its start."""
    argv = [part.format(tmp=tmp_path) for part in command]
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_AT_IMPORT, module, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1:] == [f"leadhub {argv[0]}: stopped."], done.stderr
    assert done.returncode == 130
    assert not (tmp_path / "hub.db").exists()  # (no store was made on the way)
