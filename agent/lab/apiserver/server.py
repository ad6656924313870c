"""`ApiServer`: the in-memory Kubernetes API server as an object you start, use and stop.

    with ApiServer(tls=True).start() as api:
        api.write_kubeconfig(tmp / "kubeconfig")
        ...                                  # kubectl / the official client / the agent
        api.faults.drop_watches()
        api.resource_version                 # the global counter (convergence protocol)

Runs its HTTP server on a daemon thread; `python -m agent.lab.apiserver` runs it as a process.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.lab.apiserver import objects, tls
from agent.lab.apiserver.faults import Faults
from agent.lab.apiserver.handlers import Handlers
from agent.lab.apiserver.resources import NAMESPACES
from agent.lab.apiserver.store import Store
from agent.lab.apiserver.transport import HttpServer

DEFAULT_NAMESPACES = ("default", "kube-system")


class ApiServer:
    """An API server for Namespaces, Pods, Nodes, Events and NetworkPolicies."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_enabled: bool = False,
        token: str | None = None,
        cert_dir: Path | None = None,
        history_limit: int = 50_000,
        bookmark_interval: float = 0.1,
        namespaces: Iterable[str] = DEFAULT_NAMESPACES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = Store(history_limit=history_limit)
        self.faults = Faults(self.store)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.certificate: tls.Certificate | None = None
        if tls_enabled:
            if cert_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="npa-apiserver-")
                cert_dir = Path(self._tmp.name)
            self.certificate = tls.generate_certificate(cert_dir, hosts=(host,))
            if token is None:
                token = tls.new_token()
        self.token = token
        self.handlers = Handlers(self.store, clock=clock, server_address=f"{host}:{port}")
        self._http = HttpServer(
            (host, port),
            handlers=self.handlers,
            store=self.store,
            faults=self.faults,
            token=token,
            ssl_context=self.certificate.server_context() if self.certificate else None,
            bookmark_interval=bookmark_interval,
        )
        self.host = host
        self.port = int(self._http.server_address[1])
        self.handlers.server_address = f"{host}:{self.port}"
        self._thread: threading.Thread | None = None
        self._foreground = False
        now = self.handlers.now()
        for name in namespaces:
            body = {"metadata": {"name": name}}
            self.store.create(
                NAMESPACES, objects.prepare_create(NAMESPACES, body, namespace=None, now=now)
            )

    @property
    def url(self) -> str:
        scheme = "https" if self.certificate else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion (the convergence protocol's yardstick)."""
        return self.store.resource_version

    def kubeconfig(self, *, namespace: str = "default") -> dict[str, Any]:
        return tls.kubeconfig(
            server=self.url,
            ca_pem=self.certificate.pem() if self.certificate else None,
            token=self.token,
            namespace=namespace,
        )

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        return tls.write_kubeconfig(path, self.kubeconfig(namespace=namespace))

    def start(self) -> ApiServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._http.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"apiserver-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until `stop()` (process mode)."""
        self._foreground = True
        self._http.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self.faults.drop_watches()
        if self._thread is not None or self._foreground:
            self._http.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._http.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(**options: Any) -> ApiServer:
    """Create and start an ApiServer on a background thread (options as for ApiServer)."""
    return ApiServer(**options).start()
