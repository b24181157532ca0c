#!/usr/bin/env bash
# Every image the compose stack runs, built on this machine, for sites that cannot pull
# from a registry (air-gapped hosts, this project's CI). `make compose-images` runs it.
#
#   images.sh build   build what is missing or out of date, then print the variables
#   images.sh env     print the EXAI_*_IMAGE assignments that point docker-compose.yml
#                     at these images (append them to .env, or export them)
#
# What it builds (BuildKit through `docker buildx`, so build secrets work):
#   exai/bookworm:local      Debian bookworm from debootstrap (`docker import`), with
#                            python3, ca-certificates and wget: the base of all below and
#                            the stand-in for the python image (EXAI_PYTHON_IMAGE)
#   exai/{ws-gateway,provider-proxy,storage-adapter,llm-simulator,canary}:local
#                            deploy/docker/service.Dockerfile, as `docker compose build`
#                            names them
#   exai/otelcol, exai/prometheus, exai/alertmanager, exai/jaeger
#                            the binaries `make tools` builds from Go modules, in
#                            deploy/docker/local-images.Dockerfile (upstream's entrypoints,
#                            users and paths)
#   exai/redis, exai/postgres
#                            Debian's packages, same file
# Grafana, Tempo and Loki are not built (AGPL): compose keeps the upstream images, and the
# compose test replaces them (tests/compose/override.yml).
#
# Skipping: the base image carries a label with the hash of its recipe and is made again
# only when that changes (about a minute); the other builds always run and BuildKit's
# layer cache makes an unchanged one take a second or two.
#
# Environment:
#   EXAI_BUILD_CA_BUNDLE   a CA bundle for pip inside the service build, passed as a build
#                          secret (mounted for the pip step only, in no layer), for machines
#                          where TLS to PyPI is intercepted. Unset: the bundle the host's own
#                          pip is told to trust (PIP_CERT), if any; else none.
#   EXAI_DEBIAN_MIRROR     debootstrap's mirror (default http://deb.debian.org/debian)
#   EXAI_DOCKER_DIR        work space for the root file system (default ~/.cache/exai/docker)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TOOLS="$ROOT/deploy/local-stack/build-tools.sh"
# shellcheck source=../local-stack/tools/versions.env
source "$ROOT/deploy/local-stack/tools/versions.env"

DOCKER_DIR="${EXAI_DOCKER_DIR:-${HOME:-/root}/.cache/exai/docker}"
MIRROR="${EXAI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
BASE_PACKAGES=ca-certificates,python3,python3-venv,python-is-python3,wget
BASE_IMAGE=exai/bookworm:local
SERVICES=(ws_gateway:8079 provider_proxy:8090 storage_adapter:8091 llm_simulator:8099 exai_canary:8098)

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

# `docker buildx build` with the engine's own BuildKit (the `docker` driver): images
# land in the engine's store, and the layer cache lives with the engine.
build() { docker buildx build --builder default --progress "${EXAI_BUILD_PROGRESS:-quiet}" "$@" >/dev/null; }

image_label() { docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

build_base() {
  local recipe rootfs
  recipe="$(printf '%s %s %s %s' "$SUITE" "$MIRROR" "$BASE_PACKAGES" "minbase" | sha256sum | cut -c1-16)"
  if [[ "$(image_label "$BASE_IMAGE" exai.recipe)" == "$recipe" ]]; then
    log "$BASE_IMAGE is up to date"
    return 0
  fi
  command -v debootstrap >/dev/null || die "debootstrap is missing; run: sudo apt-get install debootstrap"
  [[ $EUID -eq 0 ]] || die "debootstrap needs root; run: sudo make compose-images"
  rootfs="$DOCKER_DIR/rootfs-$SUITE"
  rm -rf "$rootfs"
  mkdir -p "$DOCKER_DIR"
  log "debootstrap $SUITE ($BASE_PACKAGES) from $MIRROR …"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
    >"$DOCKER_DIR/debootstrap.log" 2>&1 || die "debootstrap failed: $(tail -n 5 "$DOCKER_DIR/debootstrap.log")"
  # What a container image does without: downloaded packages, package lists, logs.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/* "$rootfs"/tmp/*
  tar -C "$rootfs" --numeric-owner -c . |
    docker import \
      --change "LABEL exai.recipe=$recipe" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
      --change 'CMD ["bash"]' \
      - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  log "$BASE_IMAGE imported"
}

build_services() {
  local entry service port name secret=() ca="${EXAI_BUILD_CA_BUNDLE:-${PIP_CERT:-}}"
  if [[ -n "$ca" ]]; then
    [[ -r "$ca" ]] || die "EXAI_BUILD_CA_BUNDLE (or PIP_CERT) names $ca, which is not a readable file"
    secret=(--secret "id=pip-ca,src=$ca")
  fi
  for entry in "${SERVICES[@]}"; do
    service="${entry%%:*}" port="${entry##*:}" name="${service//_/-}"
    name="${name#exai-}" # exai_canary is the compose service `canary`
    log "exai/$name:local"
    build -f "$ROOT/deploy/docker/service.Dockerfile" "${secret[@]}" \
      --build-arg PYTHON_IMAGE="$BASE_IMAGE" --build-arg SERVICE="$service" \
      --build-arg PORT="$port" -t "exai/$name:local" "$ROOT"
  done
}

build_local_images() {
  local context="$DOCKER_DIR/context" binary target tag
  rm -rf "$context"
  mkdir -p "$context/bin"
  for binary in otelcol prometheus promtool alertmanager amtool jaeger; do
    cp "$(bash "$TOOLS" path "$binary")" "$context/bin/$binary"
  done
  cp "$HERE/postgres-entrypoint.sh" "$context/"
  for target in $(targets); do
    tag="$(target_tag "$target")"
    log "$tag"
    build -f "$HERE/local-images.Dockerfile" --build-arg BASE_IMAGE="$BASE_IMAGE" \
      --target "$target" -t "$tag" "$context"
  done
}

targets() { echo otelcol prometheus alertmanager jaeger redis postgres; }
target_tag() {
  case "$1" in
    otelcol) echo "exai/otelcol:$OTELCOL_VERSION" ;;
    prometheus) echo "exai/prometheus:$PROMETHEUS_VERSION" ;;
    alertmanager) echo "exai/alertmanager:$ALERTMANAGER_VERSION" ;;
    jaeger) echo "exai/jaeger:$JAEGER_VERSION" ;;
    redis) echo "exai/redis:$SUITE" ;;
    postgres) echo "exai/postgres:$SUITE" ;;
  esac
}

cmd_env() {
  cat <<EOF
# Locally built images (deploy/docker/images.sh); Grafana, Tempo and Loki stay upstream.
EXAI_PYTHON_IMAGE=$BASE_IMAGE
EXAI_COLLECTOR_IMAGE=$(target_tag otelcol)
EXAI_PROMETHEUS_IMAGE=$(target_tag prometheus)
EXAI_ALERTMANAGER_IMAGE=$(target_tag alertmanager)
EXAI_REDIS_IMAGE=$(target_tag redis)
EXAI_POSTGRES_IMAGE=$(target_tag postgres)
EXAI_JAEGER_IMAGE=$(target_tag jaeger)
EOF
}

cmd_build() {
  local start=$SECONDS
  docker buildx version >/dev/null 2>&1 || die "docker buildx is missing; run: deploy/docker/engine.sh start"
  build_base
  build_local_images
  build_services
  log "done in $((SECONDS - start)) s; point compose at them with:"
  cmd_env
}

case "${1:-build}" in
  build) cmd_build ;;
  env) cmd_env ;;
  *) die "usage: $0 build|env" ;;
esac
