"""The one error hierarchy of netpol-agent.

    NetpolError                      base of everything we raise on purpose
    +-- InputError                   a user's manifest or flag is wrong (exit 2)
    |   +-- ManifestError            a file could not be read or parsed
    |   +-- PolicyInvalid            a policy failed validation (carries FieldErrors)
    +-- ConfigError                  settings are inconsistent (reports all problems)
    +-- DataplaneError               the kernel refused something
    |   +-- ApplyError               iptables-restore / ipset restore failed
    |   +-- HostCheckError           br_netfilter / sysctl prerequisites missing
    +-- KubeError                    the Kubernetes API failed us

Library exceptions are translated at the boundary with `raise ... from exc`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """A validation problem: the object ("ns/name"), the field path and what is wrong."""

    obj: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.path}: {self.message}"


class NetpolError(Exception):
    """Base class of every error netpol-agent raises on purpose."""


class InputError(NetpolError):
    """Bad user input: a manifest, an argument."""


class ManifestError(InputError):
    """A manifest file could not be read or parsed."""


class PolicyInvalid(InputError):
    """A NetworkPolicy failed validation."""

    def __init__(self, errors: tuple[FieldError, ...]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


class ConfigError(NetpolError):
    """Settings are inconsistent; the message lists every problem."""


class DataplaneError(NetpolError):
    """The kernel refused an operation."""


class ApplyError(DataplaneError):
    """iptables-restore or ipset restore failed; the message quotes the payload."""


class HostCheckError(DataplaneError):
    """A host prerequisite (br_netfilter, bridge-nf-call-iptables) is missing."""


class KubeError(NetpolError):
    """The Kubernetes API failed."""
