#!/usr/bin/env bash
# Builds the netpol-agent image without a Docker engine, with podman (daemonless).
#
# When podman has no debian:bookworm-slim image, one is made with
# `debootstrap --variant=minbase bookworm` from this machine's Debian mirror and
# imported under that name (the rootfs tarball is cached, so it is made once per
# machine). The image is then built from the project's Dockerfile with
# `podman build --isolation=chroot --network=host --pull=never` and tagged
# localhost/netpol-agent:dev. Layers are cached: a source edit rebuilds only
# the last layers. Missing Debian packages (podman, buildah, runc, debootstrap)
# are installed with apt-get. Run as root.
#
# Usage: deploy/image/build-local.sh [--tag TAG] [--clean] [--no-cache] [--refresh-base]
#   --clean         build as on a fresh machine: no cached layer used, none kept
#   --refresh-base  debootstrap the base again (e.g. for Debian security updates)
# Environment:
#   NETPOL_IMAGE_TAG     image tag (default localhost/netpol-agent:dev)
#   NETPOL_IMAGE_CACHE   where the base rootfs tarball is kept (default /var/cache/netpol-agent)
#   DEBIAN_MIRROR        Debian mirror for debootstrap (default: the one apt uses here)
#   CONTAINERS_CONF      podman settings (default deploy/image/containers.conf: runc,
#                        no default ulimits)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tag=${NETPOL_IMAGE_TAG:-localhost/netpol-agent:dev}
cache_dir=${NETPOL_IMAGE_CACHE:-/var/cache/netpol-agent}
base_image=docker.io/library/debian:bookworm-slim
base_tar=$cache_dir/debian-bookworm-minbase.tar
build_flags=()
layers=true
refresh_base=0

while (($#)); do
    case $1 in
        --tag) tag=$2; shift 2 ;;
        --no-cache) build_flags+=(--no-cache); shift ;;
        --clean) build_flags+=(--no-cache); layers=false; shift ;;
        --refresh-base) refresh_base=1; shift ;;
        -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-local.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { printf 'build-local: %s\n' "$*" >&2; }

if ((EUID != 0)); then
    echo "build-local.sh: run as root (debootstrap and podman's chroot builds need it)" >&2
    exit 1
fi

export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}

ensure_packages() {
    local missing=() bin
    for bin in podman buildah runc debootstrap; do
        command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
    done
    ((${#missing[@]})) || return 0
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The mirror apt uses on this machine (deb822 or one-line sources), else deb.debian.org.
debian_mirror() {
    if [[ -n ${DEBIAN_MIRROR:-} ]]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local uri
    uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
        | grep -v -- '-security' | head -n1 || true)
    if [[ -z $uri ]]; then
        uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# A minbase bookworm rootfs, slimmed like the official -slim image, as a tarball.
make_base_tarball() {
    local mirror root
    mirror=$(debian_mirror)
    root=$(mktemp -d /var/tmp/npa-debootstrap.XXXXXX)
    # shellcheck disable=SC2064  # expand $root now
    trap "rm -rf '$root'" EXIT
    log "debootstrap --variant=minbase bookworm from $mirror (about 30 s)"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
    cat >"$root/etc/apt/sources.list" <<EOF_SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF_SOURCES
    # As in the official slim images: no docs, man pages or apt caches.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF_DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF_DPKG
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF_APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Install-Recommends "false";
EOF_APT
    find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/*.log
    mkdir -p "$cache_dir"
    tar --numeric-owner -C "$root" -cf "$base_tar.tmp" .
    mv "$base_tar.tmp" "$base_tar"
    rm -rf "$root"
    trap - EXIT
}

ensure_base() {
    if ((refresh_base)); then
        rm -f "$base_tar"
        podman rmi -f "$base_image" >/dev/null 2>&1 || true
    fi
    if podman image exists "$base_image"; then
        return
    fi
    [[ -s $base_tar ]] || make_base_tarball
    log "importing $base_tar as $base_image"
    podman import --quiet "$base_tar" "$base_image" >/dev/null
}

build() {
    local version revision ca_flags=()
    version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$repo/agent/__init__.py")
    revision=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
    # Networks that intercept TLS give this machine an extra CA: hand pip the same bundle.
    if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
        ca_flags=(--secret "id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt")
    fi
    log "building $tag"
    podman build --isolation=chroot --network=host --pull=never "--layers=$layers" \
        "${build_flags[@]}" "${ca_flags[@]}" \
        --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
        -f "$repo/Dockerfile" -t "$tag" "$repo"
}

ensure_packages
ensure_base
previous=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
start=$SECONDS
build
current=$(podman image inspect --format '{{.Id}}' "$tag")
if [[ -n $previous && $previous != "$current" ]]; then
    # The image this tag named before, unless something else still uses it.
    podman rmi "$previous" >/dev/null 2>&1 || true
fi
log "built $tag in $((SECONDS - start)) s, $(podman image inspect --format '{{.Size}}' "$tag") bytes"
