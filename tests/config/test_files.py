"""Files of the config directory that cannot be read: each is an error saying why, with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, load
from tests.support.server import leadhub_run

GOOD = "kind: endpoint\nname: e\nsource: none\n---\nname: m\nendpoint: e\nfields: {mx_A: $.a}\n"


def test_a_dangling_symlink_is_reported(tmp_path: Path) -> None:
    """A *.yaml symlink to a file that is gone is an error naming the link, where it points
    and the fix, instead of being skipped silently."""
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").symlink_to("moved/endpoints.yaml")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert info.value.issues == [
        f"{tmp_path}/b.yaml:1: the file is a symbolic link to 'moved/endpoints.yaml', which "
        "does not exist; point the link at the configuration file or remove it"
    ]


@pytest.mark.parametrize("inside", [(), ("endpoints.yaml",)])
def test_a_directory_named_like_a_file_is_an_error(tmp_path: Path, inside: tuple[str, ...]) -> None:
    """A directory named ``leads.yaml`` (what a container's bind mount of a file missing on
    the host makes) was passed over without a word: check said ok, and the endpoints meant
    to be in it were missing, their senders answered 404. Now it is an error at its name,
    the one problem reported (the YAML files in it are not also named as a subdirectory's),
    and the check exits 1."""
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "leads.yaml").mkdir()
    for name in inside:
        (tmp_path / "leads.yaml" / name).write_text(GOOD)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert info.value.issues == [
        f"{tmp_path}/leads.yaml:1: this is a directory, not a file, so nothing in it is read "
        "(a container's bind mount of a file missing on the host makes one so); put the "
        "configuration file here in its place, or remove it"
    ]
    assert not [w for w in info.value.warnings if "leads.yaml" in w]
    done = leadhub_run(["check", str(tmp_path)])
    assert done.returncode == 1, done.stdout
    assert f"{tmp_path}/leads.yaml:1: this is a directory, not a file" in done.stdout


def test_a_symlink_to_a_file_is_read(tmp_path: Path) -> None:
    """A *.yaml symlink to an existing file is read like the file."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "endpoints.yaml").write_text(GOOD)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "a.yaml").symlink_to("../shared/endpoints.yaml")
    assert list(load(tmp_path / "config", {}).endpoints) == ["e"]


def test_a_file_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    """A file in another encoding is an error at the line of the first byte that is not
    UTF-8 (it was always line 1), naming the byte and asking for UTF-8."""
    (tmp_path / "a.yaml").write_bytes("kind: endpoint\nname: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert info.value.issues == [
        f"{tmp_path}/a.yaml:2: the file is not UTF-8 text (byte 0xe9 at offset 24); "
        "save it as UTF-8"
    ]


@pytest.mark.slow
def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    """A 4.4 MB file of 200,000 fields took `leadhub check` a minute and 490 MB; a file
    over 1 MiB is refused at once with the fix, and the other files are still checked."""
    fields = "".join(f"  mx_F{i}: $.f{i}\n" for i in range(200_000))
    (tmp_path / "a.yaml").write_text(GOOD.replace("{mx_A: $.a}", "") + fields)
    (tmp_path / "b.yaml").write_text("kind: endpoint\nname: b\nsource: nonee\n")
    done = leadhub_run(["check", str(tmp_path)], timeout=20, leadhub_env=False)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"{tmp_path}/a.yaml:1: the file is larger than 1 MiB, far more than configuration "
        "needs (the examples are a few KiB); is it a configuration file? split it into "
        "several files or move it out of the directory"
    )
    assert lines[1].startswith(f"{tmp_path}/b.yaml:3: 'source' of endpoint 'b' is 'nonee'")


@pytest.mark.slow
def test_an_unreadable_file_says_permission_is_denied(tmp_path: Path) -> None:
    """`leadhub check` on a file it may not read: exit 1, an error saying the file cannot be
    read (permission) and how to fix it, not "save it as UTF-8"."""
    (tmp_path / "a.yaml").write_text(GOOD)
    secret = tmp_path / "b.yaml"
    secret.write_text(GOOD.replace("name: e", "name: f"))
    secret.chmod(0)
    done = leadhub_run(["check", str(tmp_path)], unprivileged=True, leadhub_env=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == (
        f"{secret}:1: the file cannot be read: permission denied; let the user running "
        f"leadhub read it (chmod a+r {secret}) or move it out of the directory"
    )
    assert "UTF-8" not in done.stdout


def test_yaml_files_it_does_not_read_are_named(tmp_path: Path) -> None:
    """`leadhub check` names a *.YAML / *.Yml file (only lower-case endings are read) and a
    subdirectory's YAML files (only the directory's own are), each with the fix: their
    endpoints were missing without a word, check said ok and the hub answered 404. A
    directory holding nothing but such a file says so beside its error."""
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "Webinar.YAML").write_text(GOOD)
    (tmp_path / "forms").mkdir()
    (tmp_path / "forms" / "one.yaml").write_text(GOOD)
    (tmp_path / "forms" / "two.yml").write_text(GOOD)
    (tmp_path / "backup").mkdir()  # no YAML in it: nothing to say
    (tmp_path / "backup" / "notes.txt").write_text("x")
    (tmp_path / "a.yaml.bak").write_text(GOOD)  # kept aside on purpose: nothing to say
    done = leadhub_run(["check", str(tmp_path)], leadhub_env=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if "source: none" not in line] == [
        f"warning: {tmp_path}/Webinar.YAML:1: not read: only names ending in .yaml or .yml "
        "(lower case) are; rename it Webinar.yaml",
        f"warning: {tmp_path}/forms/one.yaml:1: not read: 2 YAML files in forms/, a "
        f"subdirectory (only the files of {tmp_path} itself are read); move them up into "
        "it, or out of it if unused",
        f"{tmp_path}: ok: 1 endpoint, 1 mapping, 1 target (default: the embedded sandbox), "
        "3 warnings",
    ]
    (tmp_path / "a.yaml").unlink()
    done = leadhub_run(["check", str(tmp_path)], leadhub_env=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[:2] == [
        f"{tmp_path}: holds no *.yaml or *.yml files; is it the right directory?",
        f"warning: {tmp_path}/Webinar.YAML:1: not read: only names ending in .yaml or .yml "
        "(lower case) are; rename it Webinar.yaml",
    ]


@pytest.mark.slow
def test_a_subdirectory_it_may_not_list_is_passed_over(tmp_path: Path) -> None:
    """A subdirectory leadhub may not list (lost+found, another user's) is none of its
    business: check says ok, with no traceback."""
    (tmp_path / "a.yaml").write_text(GOOD)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "b.yaml").write_text(GOOD)
    locked.chmod(0)
    try:
        done = leadhub_run(["check", str(tmp_path)], unprivileged=True, leadhub_env=False)
    finally:
        locked.chmod(0o700)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith(f"{tmp_path}: ok: 1 endpoint")


#: What `check` says of a file that defines nothing, at its line 1.
DEFINES_NOTHING = (
    "the file defines nothing (it is empty, or holds only comments or ---), so no endpoint, "
    "mapping or target comes from it; write its documents in it (kind: endpoint, mapping or "
    "target, like the files in mappings/), or remove it"
)


def test_a_file_that_defines_nothing_is_a_warning_at_its_first_line(tmp_path: Path) -> None:
    """`leadhub check` on a directory where a file holds no document (saved empty, the wrong
    buffer; only comments; only ---): a warning at file:1 for each, with the fix. They were
    read without a word, check said ok, and the endpoint meant to be in the file answered
    404. A file holding a document commented out (a template, like the shipped
    targets.yaml, or a sender disabled) is kept on purpose: no warning. Nor is a file whose
    syntax error stopped YAML said to define nothing."""
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "targets.yaml").write_text("# To send to an account:\n#\n#   kind: target\n")
    (tmp_path / "webinar.yaml").write_text("---\n#kind: endpoint\n#name: webinar\n")
    (tmp_path / "b.yaml").write_bytes(b"")
    (tmp_path / "c.yaml").write_text("# the webinar form's endpoint and mapping\n\n# TODO\n")
    (tmp_path / "d.yml").write_text("---\n---\n# nothing yet\n...\n")
    done = leadhub_run(["check", str(tmp_path)], leadhub_env=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if "source: none" not in line]
    assert lines == [
        f"warning: {tmp_path}/b.yaml:1: {DEFINES_NOTHING}",
        f"warning: {tmp_path}/c.yaml:1: {DEFINES_NOTHING}",
        f"warning: {tmp_path}/d.yml:1: {DEFINES_NOTHING}",
        f"{tmp_path}: ok: 1 endpoint, 1 mapping, 1 target (default: the embedded sandbox), "
        "4 warnings",
    ]
    (tmp_path / "b.yaml").write_text("# the webinar form\nkind: endpoint\nname: [webinar\n")
    done = leadhub_run(["check", str(tmp_path)], leadhub_env=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{tmp_path}/b.yaml:" in done.stdout
    assert f"b.yaml:1: {DEFINES_NOTHING}" not in done.stdout
