"""Fixtures: a running lab API server (plain HTTP or TLS + token) and clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.lab.apiserver import ApiServer
from tests.apiserver.support import Kubectl


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(bookmark_interval=0.05) as server:
        yield server


@pytest.fixture
def tls_api(tmp_path: Path) -> Iterator[ApiServer]:
    with ApiServer(tls_enabled=True, cert_dir=tmp_path / "pki") as server:
        yield server


@pytest.fixture
def kubeconfig(tls_api: ApiServer, tmp_path: Path) -> Path:
    return tls_api.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return Kubectl(kubeconfig=kubeconfig, home=tmp_path)


@pytest.fixture
def client(tls_api: ApiServer, kubeconfig: Path) -> Iterator[Any]:
    """An official-client ApiClient built from the written kubeconfig."""
    import kubernetes.config

    config: Any = kubernetes.config
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()
