"""A self-signed serving certificate, a bearer token and the kubeconfig that uses them.

The certificate comes from the `openssl` binary (EC P-256, SAN 127.0.0.1 and localhost, CA:TRUE
so it can be its own trust root, as a kubeconfig's certificate-authority-data expects). The
kubeconfig is written as JSON, which is valid YAML for kubectl and the official client.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agent.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Certificate:
    cert_file: Path
    key_file: Path

    def pem(self) -> bytes:
        return self.cert_file.read_bytes()

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        context.set_alpn_protocols(["http/1.1"])
        return context


def new_token() -> str:
    return secrets.token_urlsafe(24)


def generate_certificate(
    directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1",)
) -> Certificate:
    """Write cert.pem and key.pem into `directory` (created if missing)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ConfigError("TLS needs the openssl binary to generate a certificate; install openssl")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "apiserver.crt", directory / "apiserver.key"
    sans = ["DNS:localhost"] + [
        f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts
    ]
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "365",
        "-subj", "/CN=netpol-agent-lab-apiserver",
        "-addext", "subjectAltName=" + ",".join(dict.fromkeys(sans)),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
        "-addext", "extendedKeyUsage=serverAuth",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"openssl could not generate a certificate: {result.stderr.strip()}")
    os.chmod(key, 0o600)
    return Certificate(cert_file=cert, key_file=key)


def kubeconfig(
    *,
    server: str,
    ca_pem: bytes | None,
    token: str | None,
    name: str = "netpol-lab",
    namespace: str = "default",
) -> dict[str, object]:
    cluster: dict[str, object] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    user: dict[str, object] = {"token": token} if token else {}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
        ],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(path: Path, config: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    os.chmod(path, 0o600)
    return path
