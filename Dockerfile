# syntax=docker/dockerfile:1
# The netpol-agent node agent image: Debian bookworm's Python 3.11 plus the
# kernel tools the agent drives (iptables legacy and nft, ipset, conntrack,
# iproute2). Build stages compile python-iptables' C extension into a
# virtualenv; the final stage copies only that virtualenv (no compilers, no caches).
#
# With Docker:    docker build -t netpol-agent:dev .
# Without Docker: deploy/image/build-local.sh   (podman, debootstrap base)
# The entrypoint is `netpol-agent`, the default command `run`.

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build-base
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Debian stable only ships security fixes, so packages are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates gcc libc6-dev python3 python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/netpol-agent

# The runtime dependencies, extracted from pyproject.toml: the install below is
# cached for as long as this list is unchanged, whatever else changes there.
FROM build-base AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > requirements.txt

FROM build-base AS build
# Dependencies first: they change rarely, so a source edit rebuilds only the
# last layer. An optional build secret `pip-ca` is a CA bundle for pip (for
# networks that intercept TLS); without it pip uses its own bundle. The
# kubernetes package also ships an asyncio copy of the client (kubernetes/aio,
# ~70 MB) that nothing imports: the agent uses the synchronous client.
COPY --from=requirements /src/requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && /opt/netpol-agent/bin/pip install "setuptools>=68" wheel \
    && /opt/netpol-agent/bin/pip install -r /tmp/requirements.txt \
    && rm -rf /opt/netpol-agent/lib/python3*/site-packages/kubernetes/aio

WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
RUN /opt/netpol-agent/bin/pip install --no-deps --no-build-isolation . \
    && /opt/netpol-agent/bin/python -m compileall -q /opt/netpol-agent/lib \
    && /opt/netpol-agent/bin/python -m pip uninstall -y -q setuptools wheel pip

FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates conntrack iproute2 ipset iptables python3 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
COPY --from=build /opt/netpol-agent /opt/netpol-agent
ENV PATH=/opt/netpol-agent/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The agent runs as root with only NET_ADMIN and NET_RAW (see deploy/base/daemonset.yaml):
# capabilities added to a non-root user are not effective.
EXPOSE 9847
ENTRYPOINT ["netpol-agent"]
CMD ["run"]

# Last, so a new revision changes only this layer.
ARG VERSION=0.2.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="netpol-agent" \
      org.opencontainers.image.description="NetworkPolicy enforcement agent for clusters whose CNI has none (Flannel, kubenet, bridges)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="netpol-agent" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
