"""A relative ``--db`` (``sqlite:///leadhub.db``, serve's default; ``sqlite:///data/hub.db``)
is the working directory's: the log names the file by the absolute path it resolved to. It
logged the path as given (``store_opened`` ``path: hub.db``), and an operator reading the
log could not tell which file the hub used. Real processes in a working directory of their
own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sandbox.helpers import sandbox_args
from tests.support.server import free_port, leadhub_process
from tests.web.test_serve import ENV, serve_args
from tests.web.test_store_wait import lines, wait_for_line


@pytest.mark.slow
def test_serve_names_a_relative_store_file_by_its_absolute_path(tmp_path: Path) -> None:
    port = free_port()
    args = serve_args(tmp_path, port, role="web", db="sqlite:///data/hub.db")
    with leadhub_process(args, env=ENV, cwd=tmp_path) as proc:
        (opened,) = lines(wait_for_line(proc, "store_opened"), "store_opened")
    assert opened["path"] == str(tmp_path / "data" / "hub.db")
    assert (tmp_path / "data" / "hub.db").is_file()


@pytest.mark.slow
def test_the_sandbox_names_a_relative_file_by_its_absolute_path(tmp_path: Path) -> None:
    port = free_port()
    args = sandbox_args(port, "ak", "sk", "--db", "leads.db")
    with leadhub_process(args, cwd=tmp_path) as proc:
        (ready,) = lines(wait_for_line(proc, "sandbox_ready"), "sandbox_ready")
    assert ready["db"] == str(tmp_path / "leads.db")
    assert (tmp_path / "leads.db").is_file()
