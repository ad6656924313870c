"""Decoding the few protobuf request bodies kubectl sends (`kubectl create namespace`).

Typed kubectl commands encode their body as `application/vnd.kubernetes.protobuf` and do not
fall back to JSON on 415. This decoder understands the `k8s\\0` envelope (runtime.Unknown) and
the object's metadata (name, generateName, namespace, labels, annotations); the rest of the
object is dropped, which is exact for a Namespace and refused (415) for other kinds.
"""

from __future__ import annotations

from typing import Any

PROTOBUF = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """The body is not a protobuf message this decoder understands."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, value) pairs; length-delimited values stay bytes."""
    pos = 0
    out: list[tuple[int, bytes | int]] = []
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _text(value: bytes | int) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a string")
    return value.decode()


def _map_entry(value: bytes | int) -> tuple[str, str]:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a map entry")
    entry = dict(_fields(value))
    return _text(entry.get(1, b"")), _text(entry.get(2, b""))


def _object_meta(data: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    names = {1: "name", 2: "generateName", 3: "namespace"}
    for number, value in _fields(data):
        if number in names and _text(value):
            meta[names[number]] = _text(value)
        elif number in (11, 12):
            key, text = _map_entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = text
    return meta


def decode(body: bytes) -> dict[str, Any]:
    """A JSON-shaped object with kind, apiVersion and metadata from a protobuf body."""
    if not body.startswith(_MAGIC):
        raise ProtobufError("missing the k8s protobuf envelope")
    unknown = dict(_fields(body[len(_MAGIC) :]))
    type_meta = unknown.get(1, b"")
    raw = unknown.get(2, b"")
    if not isinstance(type_meta, bytes) or not isinstance(raw, bytes):
        raise ProtobufError("malformed envelope")
    tm = dict(_fields(type_meta))
    obj: dict[str, Any] = {"apiVersion": _text(tm.get(1, b"")), "kind": _text(tm.get(2, b""))}
    meta_bytes = dict(_fields(raw)).get(1, b"")
    if not isinstance(meta_bytes, bytes):
        raise ProtobufError("malformed object")
    obj["metadata"] = _object_meta(meta_bytes)
    return obj
