"""Request and response values passed between the transport and the handlers, and the
small codecs of request bodies, content negotiation and `continue` tokens.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.lab.apiserver import errors, protobuf
from agent.lab.apiserver.resources import ResourceInfo
from agent.lab.apiserver.watch import Watcher

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON


@dataclass(frozen=True, slots=True)
class WatchStream:
    """An open watch for the HTTP layer to stream until STOP, timeout or disconnect."""

    watcher: Watcher
    info: ResourceInfo
    timeout: float | None
    render: Callable[[bytes], bytes] | None = None  # rewrites each event (Tables for kubectl)


def json_response(status: int, obj: Any) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode())


def truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true")


def wants_table(headers: Mapping[str, str]) -> bool:
    accept = headers.get("accept", "")
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def parse_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type == protobuf.PROTOBUF and request.method == "POST":
        try:
            obj = protobuf.decode(request.body)
        except (protobuf.ProtobufError, UnicodeDecodeError) as exc:
            raise errors.bad_request(f"cannot decode the protobuf body: {exc}") from exc
        if obj.get("kind") != "Namespace":
            raise errors.unsupported_media_type(content_type)
        return obj
    if content_type and "json" not in content_type:
        raise errors.unsupported_media_type(content_type)
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"the request body is not valid JSON: {exc}") from exc


def encode_continue(rv: int, after: str) -> str:
    raw = json.dumps({"rv": rv, "start": after}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise errors.bad_request(f"invalid continue token: {token!r}") from exc
