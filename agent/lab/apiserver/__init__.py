"""An in-memory Kubernetes API server for tests and the lab (not a general API server).

See docs/apiserver.md. Public entry points: `ApiServer`, `serve`, `Faults`.
"""

from agent.lab.apiserver.faults import Faults
from agent.lab.apiserver.server import ApiServer, serve

__all__ = ["ApiServer", "Faults", "serve"]
