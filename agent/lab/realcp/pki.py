"""The lab's own certificate authority and the keys a real control plane needs.

kube-apiserver serves TLS with a certificate from a lab CA and authenticates
clients by certificates from the same CA (the user is the certificate's CN,
its groups the O fields, as upstream). The service-account signing key pair
signs the tokens the TokenRequest API issues. Everything is made by the
`openssl` binary into the lab's state directory, EC P-256, valid for a week:
a lab never outlives that.

    pki/ca.crt ca.key                       the trust root of every kubeconfig
    pki/apiserver.crt .key                  SANs: 172.18.0.1, 127.0.0.1, 10.96.0.1, localhost,
                                            kubernetes.default.svc...
    pki/<user>.crt .key                     client certificates (admin, controller-manager, ...)
    pki/sa.key sa.pub                       service-account token signing
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agent.lab.topology import LabError

DAYS = "7"
_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True, slots=True)
class KeyPair:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise LabError("the real control plane needs the openssl binary; install openssl")
    proc = subprocess.run([binary, *args], capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise LabError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def make_ca(directory: Path) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / "ca.crt", directory / "ca.key")
    _openssl(
        "req", "-x509", *_CURVE, "-keyout", str(pair.key), "-out", str(pair.cert),
        "-days", DAYS, "-subj", "/CN=netpol-agent-lab-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
    )  # fmt: skip
    return pair


def issue(
    ca: KeyPair,
    name: str,
    *,
    common_name: str,
    organizations: tuple[str, ...] = (),
    sans: tuple[str, ...] = (),
) -> KeyPair:
    """A leaf certificate signed by `ca`: a server certificate if `sans` are given, else a
    client certificate for user `common_name` in groups `organizations`."""
    directory = ca.cert.parent
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    subject = "/" + "/".join([*(f"O={o}" for o in organizations), f"CN={common_name}"])
    usage = "serverAuth" if sans else "clientAuth"
    extensions = [
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
        "-addext", f"extendedKeyUsage={usage}",
    ]  # fmt: skip
    if sans:
        alt = ",".join(f"IP:{s}" if s[0].isdigit() else f"DNS:{s}" for s in sans)
        extensions += ["-addext", f"subjectAltName={alt}"]
    _openssl(
        "req", "-x509", *_CURVE, "-keyout", str(pair.key), "-out", str(pair.cert),
        "-days", DAYS, "-subj", subject, "-CA", str(ca.cert), "-CAkey", str(ca.key),
        *extensions,
    )  # fmt: skip
    return pair


def service_account_keys(directory: Path) -> KeyPair:
    """The token signing key (sa.key) and its public half (sa.pub, in `cert`)."""
    pair = KeyPair(directory / "sa.pub", directory / "sa.key")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(pair.key))  # fmt: skip
    _openssl("pkey", "-in", str(pair.key), "-pubout", "-out", str(pair.cert))
    return pair
