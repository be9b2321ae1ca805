"""A real ``leadhub serve`` behind a proxy: HTTPS to the target through a CONNECT tunnel."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import orjson

from hub.sandbox import create_app as create_sandbox
from tests.dispatch.support import KEYS
from tests.e2e.support import wait_until
from tests.support.proxy import basic, forward_proxy
from tests.support.server import (
    free_port,
    leadhub_process,
    leadhub_run,
    serve_args,
    serve_in_thread,
)

HOST = "lsq.proxied.test"  # resolves nowhere: only the proxy reaches it

CONFIG = """kind: target
name: default
url: https://{host}:{port}
access_key: ${{LSQ_ACCESS}}
secret_key: ${{LSQ_SECRET}}
rate_limit: "off"
retry: {{initial: 50ms, max_interval: 200ms}}
---
kind: endpoint
name: forms
source: token
token: ${{FORMS_TOKEN}}
---
kind: mapping
name: forms-map
endpoint: forms
fields:
  EmailAddress: {{ path: $.email, required: true }}
"""


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA, and a certificate for HOST signed by it: (ca.pem, cert.pem, key.pem)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
        "-keyout", "ca.key", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={HOST}",
        "-keyout", "key.pem", "-out", "cert.csr",
    )  # fmt: skip
    (directory / "ext.cnf").write_text(
        f"subjectAltName=DNS:{HOST}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "cert.pem", "-extfile", "ext.cnf",
    )  # fmt: skip
    return directory / "ca.pem", directory / "cert.pem", directory / "key.pem"


def test_leads_reach_an_https_target_through_the_proxys_tunnel(tmp_path: Path) -> None:
    """https_proxy (with credentials) set for ``leadhub serve``: a lead goes to an https
    target whose name only the proxy resolves, through a CONNECT tunnel, with the target's
    certificate verified end to end (its CA from SSL_CERT_FILE); the ready line names the
    proxy without its credentials, and no output line holds the password."""
    ca, cert, key = _certificates(tmp_path)
    sandbox = create_sandbox(
        access_key=KEYS["LSQ_ACCESS"], secret_key=KEYS["LSQ_SECRET"], db_path=None
    )
    with (
        serve_in_thread(sandbox, ssl_certfile=str(cert), ssl_keyfile=str(key)) as plain,
        forward_proxy(login="ops", password="hunter2") as (proxy_url, seen),
    ):
        target_port = int(plain.rsplit(":", 1)[1])
        files = {"forms.yaml": CONFIG.format(host=HOST, port=target_port)}
        args, base, _ = serve_args(tmp_path, files)
        env = {
            **KEYS,
            "FORMS_TOKEN": "t0k",
            # (lower case: it wins over whatever HTTPS_PROXY this machine may set)
            "https_proxy": proxy_url.replace("http://", "http://ops:hunter2@"),
            "SSL_CERT_FILE": str(ca),
            **{f"{name}_proxy": "" for name in ("http", "all", "no")},
        }
        with leadhub_process(args, ready_url=f"{base}/healthz", env=env) as proc:
            answer = httpx.post(
                f"{base}/hooks/forms",
                json={"email": "tunnel@example.com"},
                headers={"Authorization": "Bearer t0k"},
            )
            assert answer.status_code == 200
            keys = {"x-LSQ-AccessKey": KEYS["LSQ_ACCESS"], "x-LSQ-SecretKey": KEYS["LSQ_SECRET"]}
            sandbox_url = f"https://127.0.0.1:{target_port}/_sandbox/leads"

            def delivered() -> list[dict[str, str]]:
                found = httpx.get(sandbox_url, headers=keys, verify=False, timeout=10).json()
                return list(found)

            wait_until(lambda: bool(delivered()), what="the lead in the https sandbox")
            (lead,) = delivered()
            assert proc.stdout is not None
            output = proc.stdout.read()
    assert lead["EmailAddress"] == "tunnel@example.com"
    assert seen.lines == [f"CONNECT {HOST}:{target_port} HTTP/1.1"]
    assert seen.authorizations == [basic("ops", "hunter2")]
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    (ready,) = (line for line in lines if line["event"] == "hub_ready")
    assert ready["proxies"] == {"https": proxy_url}
    assert "hunter2" not in output


def test_a_proxy_serve_cannot_use_stops_it_with_exit_2(tmp_path: Path) -> None:
    """``ALL_PROXY=socks5://...``: serve (which runs the dispatcher) exits 2 before it
    listens, naming the variable, the proxy's host and port, why and the fix, never the
    password; check (which said ok) says the same and exits 1."""
    (tmp_path / "forms.yaml").write_text(CONFIG.format(host=HOST, port=443))
    env = {
        **KEYS,
        "FORMS_TOKEN": "t0k",
        "all_proxy": "socks5://ops:hunter2@proxy.corp.example:1080",
        **{f"{name}_proxy": "" for name in ("http", "https", "no")},
    }
    args = ["serve", "--config-dir", str(tmp_path), "--port", str(free_port())]
    result = leadhub_run([*args, "--db", f"sqlite:///{tmp_path}/hub.db"], env=env)
    assert result.returncode == 2
    said = (
        "all_proxy names the proxy 'socks5://proxy.corp.example:1080', which the hub cannot "
        "send through (it sends through http:// and https:// proxies only, not socks5://); "
        "set it to an http:// or https:// proxy (http://host:port) or unset it"
    )
    assert result.stderr.startswith(f"leadhub serve: {said}")
    assert "hunter2" not in result.stderr + result.stdout
    checked = leadhub_run(["check", str(tmp_path)], env=env)
    assert checked.returncode == 1, checked.stdout
    assert checked.stdout.splitlines() == [said, f"{tmp_path}: 1 error"]
    assert "hunter2" not in checked.stdout + checked.stderr


def test_a_ca_file_openssl_cannot_read_stops_serve_with_exit_2(tmp_path: Path) -> None:
    """``SSL_CERT_FILE`` naming a file that is not there (a mistyped path), or one holding no
    certificate: OpenSSL ignores it without a word, so the private CA it was set for was not
    trusted and every call to its host failed its certificate check, the variable looking
    set. serve (which runs the dispatcher) exits 2 naming it and the fix (a good bundle
    starts: the tunnel test above)."""
    (tmp_path / "forms.yaml").write_text(CONFIG.format(host=HOST, port=443))
    (tmp_path / "notes.pem").write_text("our corporate CA, to paste here\n")
    missing = str(tmp_path / "corp-ca.pem")
    args = ["serve", "--config-dir", str(tmp_path), "--port", str(free_port())]
    args += ["--db", f"sqlite:///{tmp_path}/hub.db"]
    env = {**KEYS, "FORMS_TOKEN": "t0k"}
    fix = "point it at a PEM file of the CA certificates to trust, or unset it"
    result = leadhub_run(args, env={**env, "SSL_CERT_FILE": missing})
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"leadhub serve: SSL_CERT_FILE names {missing!r}, which does not exist; {fix}\n"
    )
    checked = leadhub_run(["check", str(tmp_path)], env={**env, "SSL_CERT_FILE": missing})
    assert checked.returncode == 1, checked.stdout
    assert f"SSL_CERT_FILE names {missing!r}, which does not exist; {fix}\n" in checked.stdout
    empty = str(tmp_path / "notes.pem")
    result = leadhub_run(args, env={**env, "SSL_CERT_FILE": empty})
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"leadhub serve: SSL_CERT_FILE names {empty!r}, which holds no certificate it can read "
        f"(NO_CERTIFICATE_OR_CRL_FOUND); {fix}\n"
    )
