"""The Dockerfile's build, without Docker: what it copies, built and installed as a wheel
(not the editable checkout the other tests import), serves the shipped examples from another
directory with the image's settings."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import REPO, wait_until
from tests.e2e.test_crash import CONFIG, ENV
from tests.e2e.test_reload import Log
from tests.mappings.cases import DEMO_ENV
from tests.support.server import free_port, leadhub_process, serve_args


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as ``(INSTRUCTION, arguments)``, continuations joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    steps = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            steps.append((word.upper(), rest.strip()))
    return steps


def image_env() -> dict[str, str]:
    """The image's ``ENV`` settings."""
    env: dict[str, str] = {}
    for word, rest in dockerfile():
        if word == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def copy_sources(build: Path, config: Path) -> None:
    """Each ``COPY`` of the Dockerfile: into ``build`` (its WORKDIR), or, for the one that
    fills ``/config``, into ``config``."""
    copies = [shlex.split(rest) for word, rest in dockerfile() if word == "COPY"]
    assert copies, "the Dockerfile copies nothing"
    for *sources, dest in copies:
        into = config if dest == "/config" else build / dest
        for source in sources:
            path = REPO / source
            if path.is_dir():
                shutil.copytree(path, into, dirs_exist_ok=True)
            else:  # (files are copied into a directory: `COPY a b ./`)
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, into)


def test_the_build_context_is_what_the_dockerfile_copies() -> None:
    """``.dockerignore`` leaves out everything (``*``) but what the Dockerfile's COPY lines
    name, and keeps stores out even inside those (a checkout where ``make run`` ran holds
    ``leadhub.db``, leads and raw bodies, and ``.venv``: without it both went to the builder)."""
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    kept = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copies = [shlex.split(rest) for word, rest in dockerfile() if word == "COPY"]
    sources = {source.rstrip("/") for *names, _dest in copies for source in names}
    assert kept == sources, "each COPY source is let into the context, and nothing else"
    assert {"**/*.db", "**/*.db-*", "**/*.sqlite"} <= set(lines[1:])


@pytest.mark.slow
def test_the_installed_package_serves_the_examples(tmp_path: Path) -> None:
    build, config, site, data = (tmp_path / d for d in ("build", "config", "site", "data"))
    build.mkdir()
    copy_sources(build, config)
    assert "RUN pip install ." in " ".join(f"{w} {r}" for w, r in dockerfile())
    # `pip install .` offline: the checkout's venv has the build backend (setuptools).
    pip = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--no-index", "-q", "-w", str(tmp_path / "dist")],
        cwd=build,
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("leadhub-*.whl")
    with zipfile.ZipFile(wheel) as built:
        built.extractall(site)
    env = {
        **image_env(),
        **DEMO_ENV,
        "PYTHONPATH": str(site),  # before the editable checkout on the import path
        "LEADHUB_HOST": "127.0.0.1",  # loopback in tests; the image listens on 0.0.0.0
        "LEADHUB_PORT": str(port := free_port()),
        "LEADHUB_DB": f"sqlite:///{data}/leadhub.db",
        "LEADHUB_CONFIG_DIR": str(config),
    }
    where = subprocess.run(
        [sys.executable, "-c", "import hub; print(hub.__file__)"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site)
    base = f"http://127.0.0.1:{port}"
    health = healthcheck()
    with leadhub_process(["serve"], ready_url=f"{base}/readyz", env=env, cwd=tmp_path):
        assert health(env).returncode == 0
        answer = httpx.post(
            f"{base}/hooks/zapier",
            json={"first_name": "Asha", "email": "asha.rao@example.com"},
            headers={"X-Api-Key": DEMO_ENV["ZAPIER_TOKEN"]},
        )
        assert answer.status_code == 200, answer.text
        wait_until(
            lambda: '{state="delivered"} 1.0' in httpx.get(f"{base}/metrics").text,
            what="the lead's delivery",
        )
    assert (data / "leadhub.db").is_file()
    assert health(env).returncode == 1  # stopped: unhealthy


def healthcheck() -> Callable[[dict[str, str]], subprocess.CompletedProcess[str]]:
    """The Dockerfile's HEALTHCHECK command, run as the image's shell would run it (with this
    interpreter for ``python``) in an environment with an HTTP proxy that answers nothing:
    the check must reach the hub on ``LEADHUB_PORT`` directly."""
    (command,) = (rest for word, rest in dockerfile() if word == "HEALTHCHECK")
    shell = command.split(" CMD ", 1)[1].replace("python ", f"{shlex.quote(sys.executable)} ", 1)

    def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        proxied = {**os.environ, **env, "http_proxy": dead, "HTTP_PROXY": dead, "no_proxy": ""}
        return subprocess.run(
            ["sh", "-c", shell], env=proxied, capture_output=True, text=True, timeout=30
        )

    return run


@pytest.mark.slow
def test_a_port_flag_over_the_images_port_variable_is_said(tmp_path: Path) -> None:
    """``docker run leadhub serve --port P``: the flag wins over the image's ``LEADHUB_PORT``,
    so its ``HEALTHCHECK`` (which reads the variable) asks a port nothing serves and the
    container is unhealthy; serve says so at start, with the fix. With the port given as the
    variable alone, the check passes and nothing is said."""
    health = healthcheck()
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG}, "--log-json")
    flag_port = args[args.index("--port") + 1]
    image = {**ENV, "LEADHUB_PORT": str(other := free_port())}
    with leadhub_process(args, ready_url=f"{base}/readyz", env=image) as proc:
        log = Log(proc)
        wait_until(lambda: bool(log.events("hub_ready")), what="the ready line")
        assert health(image).returncode == 1  # the variable's port: nothing serves it
        (said,) = log.events("port_flag_over_variable")
        assert said["level"] == "warning"
        assert said["port"] == int(flag_port) and said["LEADHUB_PORT"] == str(other)
        assert f"set LEADHUB_PORT={flag_port} instead of giving --port" in said["message"]

    at = args.index("--port")
    by_variable = {**ENV, "LEADHUB_PORT": flag_port}
    with leadhub_process(args[:at] + args[at + 2 :], ready_url=f"{base}/readyz", env=by_variable):
        assert health(by_variable).returncode == 0
    with leadhub_process(args, ready_url=f"{base}/readyz", env=by_variable) as proc:
        log = Log(proc)
        wait_until(lambda: bool(log.events("hub_ready")), what="the ready line")
        assert log.events("port_flag_over_variable") == []  # (the same port both ways)
