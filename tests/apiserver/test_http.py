"""The wire protocol below the clients: discovery, OpenAPI, Tables, media types, process mode."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from agent.lab.apiserver import ApiServer
from agent.lab.apiserver.protobuf import decode
from tests.apiserver.support import call, pod, policy


def test_discovery_documents(api: ApiServer) -> None:
    assert call(api.url, "GET", "/version")[1]["gitVersion"].startswith("v1.32.")
    assert call(api.url, "GET", "/api")[1]["versions"] == ["v1"]
    groups = call(api.url, "GET", "/apis")[1]["groups"]
    assert [g["name"] for g in groups] == ["networking.k8s.io", "policy.networking.k8s.io"]
    core = {r["name"]: r for r in call(api.url, "GET", "/api/v1")[1]["resources"]}
    assert {"pods", "pods/status", "namespaces", "nodes", "events"} <= set(core)
    assert core["pods"]["namespaced"] and not core["nodes"]["namespaced"]
    assert core["pods"]["shortNames"] == ["po"]
    networking = call(api.url, "GET", "/apis/networking.k8s.io/v1")[1]["resources"]
    assert networking[0]["name"] == "networkpolicies" and networking[0]["shortNames"] == ["netpol"]
    cluster = call(api.url, "GET", "/apis/policy.networking.k8s.io/v1alpha2")[1]["resources"]
    cnp = {r["name"]: r for r in cluster}["clusternetworkpolicies"]
    assert not cnp["namespaced"] and cnp["shortNames"] == ["cnp"]


def test_aggregated_discovery_request_gets_the_legacy_format(api: ApiServer) -> None:
    request = urllib.request.Request(
        api.url + "/apis",
        headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Type"] == "application/json"
        assert json.loads(response.read())["kind"] == "APIGroupList"


def test_openapi_v3_declares_field_validation(api: ApiServer) -> None:
    root = call(api.url, "GET", "/openapi/v3")[1]
    url = root["paths"]["apis/networking.k8s.io/v1"]["serverRelativeURL"]
    doc = call(api.url, "GET", url)[1]
    path = doc["paths"]["/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/{name}"]
    assert "fieldValidation" in [p["name"] for p in path["patch"]["parameters"]]
    assert call(api.url, "GET", "/openapi/v2")[0] == 404


def _get(api: ApiServer, path: str, accept: str) -> Any:
    request = urllib.request.Request(api.url + path, headers={"Accept": accept})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def test_tables_for_kubectl_get(api: ApiServer) -> None:
    call(api.url, "POST", "/api/v1/namespaces/default/pods", pod("a", app="web"))
    call(
        api.url,
        "POST",
        "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies",
        policy("p", app="web"),
    )
    table = _get(api, "/api/v1/namespaces/default/pods", TABLE)
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    assert table["rows"][0]["cells"][:4] == ["a", "0/1", "Pending", 0]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    one = _get(api, "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/p", TABLE)
    assert one["rows"][0]["cells"][:2] == ["p", "app=web"]
    plain = _get(api, "/api/v1/pods", "application/json")
    assert plain["kind"] == "PodList"


def test_protobuf_namespace_create(api: ApiServer) -> None:
    # what `kubectl create namespace demo --labels` would send: k8s\0 + runtime.Unknown
    meta = b"\x0a\x04demo" + b"\x5a\x08\x0a\x01k\x12\x03val"  # name, labels{k: val}
    raw = b"\x0a" + bytes([len(meta)]) + meta
    type_meta = b"\x0a\x02v1\x12\x09Namespace"
    body = (
        b"k8s\x00"
        + b"\x0a"
        + bytes([len(type_meta)])
        + type_meta
        + b"\x12"
        + bytes([len(raw)])
        + raw
    )
    assert decode(body) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "demo", "labels": {"k": "val"}},
    }
    request = urllib.request.Request(
        api.url + "/api/v1/namespaces",
        data=body,
        method="POST",
        headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201
    labels = call(api.url, "GET", "/api/v1/namespaces/demo")[1]["metadata"]["labels"]
    assert labels == {"k": "val", "kubernetes.io/metadata.name": "demo"}


def test_unsupported_patch_type_and_method(api: ApiServer) -> None:
    call(api.url, "POST", "/api/v1/namespaces/default/pods", pod("a"))
    status, body = call(
        api.url, "PATCH", "/api/v1/namespaces/default/pods/a", {}, "application/apply-patch+yaml"
    )
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")
    assert call(api.url, "PUT", "/api/v1/namespaces/default/pods", {})[0] == 405
    assert call(api.url, "GET", "/api/v1/bogus")[0] == 404
    assert call(api.url, "GET", "/api/v1/namespaces/default/pods/a/log")[0] == 404


def test_dry_run_does_not_store(api: ApiServer) -> None:
    rv = api.resource_version
    status, body = call(api.url, "POST", "/api/v1/namespaces/default/pods?dryRun=All", pod("a"))
    assert status == 201 and body["metadata"]["name"] == "a"
    assert call(api.url, "GET", "/api/v1/namespaces/default/pods/a")[0] == 404
    assert api.resource_version == rv


def test_noop_update_keeps_the_resource_version(api: ApiServer) -> None:
    created = call(api.url, "POST", "/api/v1/namespaces/default/pods", pod("a", app="x"))[1]
    patched = call(
        api.url, "PATCH", "/api/v1/namespaces/default/pods/a",
        {"metadata": {"labels": {"app": "x"}}}, "application/merge-patch+json",
    )[1]  # fmt: skip
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_runs_as_a_process(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.lab.apiserver", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        assert call(started["url"], "GET", "/api/v1/namespaces")[0] == 200
        config = json.loads(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == started["url"]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
