#!/usr/bin/env bash
# Build the telemetry tools of the no-Docker stack (and the Docker Compose CLI plugin that the
# tests use) from Go modules, at the versions pinned in deploy/local-stack/tools/versions.env,
# into a cache OUTSIDE the repo so that every clone on the machine reuses them:
#
#   ${EXAI_TOOLS_DIR:-$HOME/.cache/exai/tools}/<tool>-<version>/<binaries>
#
#   otelcol-0.161.0/otelcol            custom collector (deploy/local-stack/otelcol)
#   prometheus-3.16.0/{prometheus,promtool}
#   alertmanager-0.35.0/{alertmanager,amtool}
#   jaeger-2.13.0/jaeger               Jaeger v2 (module v1.76.0)
#   compose-5.6.0/docker-compose       Docker Compose CLI plugin (for `docker compose config`
#                                      in the tests; needs no Docker engine)
#
# Usage:
#   build-tools.sh [build] [TOOL...]   build what is missing (default: all), print a summary,
#                                      write ${EXAI_TOOLS_DIR}/env.sh
#   build-tools.sh path BINARY         print the absolute path of BINARY (otelcol, prometheus,
#                                      promtool, alertmanager, amtool, jaeger, docker-compose —
#                                      `compose` is accepted for it), building it first if
#                                      missing; progress goes to stderr, only the path to stdout
#   build-tools.sh env                 print shell assignments (EXAI_OTELCOL_BIN=… etc.), building
#                                      what is missing
#   build-tools.sh list                print TOOL VERSION STATUS DIR for each tool; builds nothing
#   build-tools.sh clean-gocache       remove the Go build cache kept under the tools dir
#
# A tool counts as present when its binaries exist, each runs `--version`, and the stamp file
# written after the build matches the current inputs (version, go.mod/go.sum, sources, flags);
# otherwise it is rebuilt. Builds go to a temporary directory and are moved into place whole,
# under a lock, so concurrent callers never see half a tool.
#
# Environment:
#   EXAI_TOOLS_DIR       cache root (default $HOME/.cache/exai/tools)
#   EXAI_TOOLS_GOCACHE   Go build cache for these builds (default $EXAI_TOOLS_DIR/.go-build)
#   GOTOOLCHAIN          defaults to "local": the machine's Go (>= 1.26.7 needed; compose
#                        v5.6.0 needs >= 1.26.8) is used as is
#   GOMODCACHE, GOPROXY  honoured as usual (the module proxy is the only network access needed)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=tools/versions.env
source "$HERE/tools/versions.env"

TOOLS_DIR="${EXAI_TOOLS_DIR:-${HOME:-/root}/.cache/exai/tools}"
ALL_TOOLS=(otelcol prometheus alertmanager jaeger compose)

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------- tool tables
tool_version() {
  case "$1" in
    otelcol) echo "$OTELCOL_VERSION" ;;
    prometheus) echo "$PROMETHEUS_VERSION" ;;
    alertmanager) echo "$ALERTMANAGER_VERSION" ;;
    jaeger) echo "$JAEGER_VERSION" ;;
    compose) echo "$COMPOSE_VERSION" ;;
    *) die "unknown tool '$1' (known: ${ALL_TOOLS[*]})" ;;
  esac
}
tool_binaries() {
  case "$1" in
    otelcol) echo otelcol ;;
    prometheus) echo prometheus promtool ;;
    alertmanager) echo alertmanager amtool ;;
    jaeger) echo jaeger ;;
    compose) echo docker-compose ;;
  esac
}
binary_tool() {
  case "$1" in
    otelcol) echo otelcol ;;
    prometheus | promtool) echo prometheus ;;
    alertmanager | amtool) echo alertmanager ;;
    jaeger) echo jaeger ;;
    docker-compose | compose) echo compose ;;
    *) die "unknown binary '$1' (known: otelcol prometheus promtool alertmanager amtool jaeger docker-compose)" ;;
  esac
}
tool_src() { # the Go module that is built
  case "$1" in
    otelcol) echo "$HERE/otelcol" ;;
    *) echo "$HERE/tools/$1" ;;
  esac
}
tool_dir() { echo "$TOOLS_DIR/$1-$(tool_version "$1")"; }

# ---------------------------------------------------------------------------- go setup
setup_go() {
  [[ -n "${_GO_READY:-}" ]] && return 0
  if ! command -v go >/dev/null 2>&1; then
    if [[ -x /usr/local/go/bin/go ]]; then PATH="/usr/local/go/bin:$PATH"; else die "go not found on PATH"; fi
  fi
  export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
  export GOCACHE="${EXAI_TOOLS_GOCACHE:-$TOOLS_DIR/.go-build}"
  # Reproducible, read-only module graph: go.mod/go.sum are committed; nothing may edit them.
  export GOFLAGS="-mod=readonly -buildvcs=false"
  export CGO_ENABLED=0
  local have need=1.26.7
  have="$(go env GOVERSION)"; have="${have#go}"
  if [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]]; then
    die "go $have is older than $need (needed by the pinned modules); install a newer Go"
  fi
  _GO_READY=1
}

# Inputs that define a build: a change in any of them means "rebuild".
build_flags() {
  case "$1" in
    otelcol) echo "-trimpath -ldflags=-s -w" ;;
    prometheus) echo "-trimpath -tags=netgo -ldflags=-s -w -X prometheus/common/version.*" ;;
    alertmanager) echo "-trimpath -tags=netgo -ldflags=-s -w -X prometheus/common/version.* ui=placeholder.gz" ;;
    jaeger) echo "-trimpath -ldflags=-s -w -X jaeger/internal/version.*" ;;
    compose) echo "-trimpath -ldflags=-s -w -X compose/internal.Version" ;;
  esac
}
inputs_hash() {
  local tool="$1" src
  src="$(tool_src "$tool")"
  {
    echo "tool=$tool version=$(tool_version "$tool") flags=$(build_flags "$tool") cgo=0"
    (cd "$src" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) ! -name '*_test.go' -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
}

# present TOOL: 0 if every binary exists, runs --version, and the stamp matches the inputs.
present() {
  local tool="$1" dir bin
  dir="$(tool_dir "$tool")"
  [[ -f "$dir/.stamp" ]] || return 1
  [[ "$(cat "$dir/.stamp")" == "$(inputs_hash "$tool")" ]] || return 1
  for bin in $(tool_binaries "$tool"); do
    [[ -x "$dir/$bin" ]] || return 1
    timeout 30 "$dir/$bin" --version >/dev/null 2>&1 || return 1
  done
}

# Check that the module graph resolves to exactly the pinned version.
check_pin() {
  local src="$1" mod="$2" want="$3" got
  got="$(cd "$src" && go list -m -f '{{.Version}}' "$mod")" ||
    die "cannot resolve $mod in $src (is the Go module proxy reachable?)"
  [[ "$got" == "$want" ]] ||
    die "$mod resolves to $got in $src but tools/versions.env pins $want; update that module (see versions.env)"
}

# ---------------------------------------------------------------------------- builders
# Each builder gets the tool's source dir and an empty output dir.
build_otelcol() {
  local src="$1" out="$2"
  check_pin "$src" go.opentelemetry.io/collector/otelcol "v$OTELCOL_VERSION"
  check_pin "$src" github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor "v$OTELCOL_VERSION"
  check_pin "$src" go.opentelemetry.io/collector/component "v$OTELCOL_CORE_STABLE_VERSION"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$out/otelcol" .)
}

prom_ldflags() { # VERSION REVISION
  local v="github.com/prometheus/common/version"
  printf -- '-s -w -X %s.Version=%s -X %s.Revision=%s -X %s.Branch=HEAD -X %s.BuildUser=exai-build-tools -X %s.BuildDate=%s' \
    "$v" "$1" "$v" "$2" "$v" "$v" "$v" "$(date -u +%Y%m%d-%H:%M:%S)"
}

build_prometheus() {
  local src="$1" out="$2" ldflags
  check_pin "$src" github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION"
  # Built without the `builtinassets` tag: the React UI is not embedded (it is produced by an
  # npm build that the Go module does not carry); the HTTP API and /metrics work.
  ldflags="$(prom_ldflags "$PROMETHEUS_VERSION" "$PROMETHEUS_MODULE_VERSION")"
  (cd "$src" &&
    go build -trimpath -tags netgo -ldflags "$ldflags" -o "$out/prometheus" github.com/prometheus/prometheus/cmd/prometheus &&
    go build -trimpath -tags netgo -ldflags "$ldflags" -o "$out/promtool" github.com/prometheus/prometheus/cmd/promtool)
}

build_alertmanager() {
  local src="$1" out="$2" ldflags moddir work
  check_pin "$src" github.com/prometheus/alertmanager "v$ALERTMANAGER_VERSION"
  # ui/web.go embeds ui/app/dist, which an npm build makes and the Go module does not carry,
  # so the module cannot be built as downloaded (and `go build -overlay` may not touch files
  # in GOMODCACHE). So: copy the downloaded module into the build dir, add a placeholder page
  # at ui/app/dist/{elm,mantine}/index.html, and build against that copy through a temporary
  # modfile (= the committed go.mod + a replace), leaving the committed go.mod/go.sum alone.
  (cd "$src" && go mod download github.com/prometheus/alertmanager)
  moddir="$(cd "$src" && go list -m -f '{{.Dir}}' github.com/prometheus/alertmanager)"
  [[ -n "$moddir" && -d "$moddir" ]] || die "alertmanager module source not found"
  work="$out/.src"
  mkdir -p "$work"
  cp -R "$moddir" "$work/alertmanager"
  chmod -R u+w "$work/alertmanager"
  local page d
  page='<!doctype html><meta charset="utf-8"><title>Alertmanager</title><p>The Alertmanager web UI is not embedded in this local build (deploy/local-stack/build-tools.sh). Use the API: <a href="api/v2/status">/api/v2/status</a>, <a href="api/v2/alerts">/api/v2/alerts</a>.</p>'
  for d in elm mantine; do # HTML is served from the .gz variant only
    mkdir -p "$work/alertmanager/ui/app/dist/$d"
    printf '%s\n' "$page" >"$work/alertmanager/ui/app/dist/$d/index.html"
    gzip -9 -n -c "$work/alertmanager/ui/app/dist/$d/index.html" >"$work/alertmanager/ui/app/dist/$d/index.html.gz"
  done
  cp "$src/go.mod" "$work/go.mod"
  cp "$src/go.sum" "$work/go.sum"
  printf '\nreplace github.com/prometheus/alertmanager => %s\n' "$work/alertmanager" >>"$work/go.mod"
  ldflags="$(prom_ldflags "$ALERTMANAGER_VERSION" "v$ALERTMANAGER_VERSION")"
  (cd "$src" &&
    go build -modfile "$work/go.mod" -trimpath -tags netgo -ldflags "$ldflags" -o "$out/alertmanager" github.com/prometheus/alertmanager/cmd/alertmanager &&
    go build -modfile "$work/go.mod" -trimpath -tags netgo -ldflags "$ldflags" -o "$out/amtool" github.com/prometheus/alertmanager/cmd/amtool)
  rm -rf "$work"
}

build_jaeger() {
  local src="$1" out="$2" v="github.com/jaegertracing/jaeger/internal/version"
  check_pin "$src" github.com/jaegertracing/jaeger "$JAEGER_MODULE_VERSION"
  (cd "$src" && go build -trimpath \
    -ldflags "-s -w -X $v.latestVersion=v$JAEGER_VERSION -X $v.commitSHA=$JAEGER_MODULE_VERSION -X $v.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -o "$out/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger)
}

build_compose() {
  local src="$1" out="$2"
  check_pin "$src" github.com/docker/compose/v5 "v$COMPOSE_VERSION"
  # As upstream's Makefile builds it (CGO off, -trimpath, internal.Version set), minus the
  # `e2e` tag, which only selects test files. The binary works standalone (docker-compose …)
  # and as a Docker CLI plugin (~/.docker/cli-plugins/docker-compose → `docker compose …`).
  (cd "$src" && go build -trimpath \
    -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=v$COMPOSE_VERSION" \
    -o "$out/docker-compose" github.com/docker/compose/v5/cmd)
}

# ---------------------------------------------------------------------------- orchestration
declare -A RESULT=() ELAPSED=()

with_lock() { # run "$@" holding the tools-dir lock (serialises concurrent builders)
  mkdir -p "$TOOLS_DIR"
  if command -v flock >/dev/null 2>&1; then
    (
      flock -w 3600 9 || die "timed out waiting for $TOOLS_DIR/.lock"
      "$@"
    ) 9>"$TOOLS_DIR/.lock"
  else
    "$@"
  fi
}

ensure() { # ensure TOOL: build it unless present; records RESULT/ELAPSED
  local tool="$1" version dir
  version="$(tool_version "$tool")"
  dir="$(tool_dir "$tool")"
  if present "$tool"; then
    log "$tool $version cached at $dir"
    RESULT[$tool]=cached
    ELAPSED[$tool]=0
    return 0
  fi
  setup_go
  local start=$SECONDS what
  what="$(with_lock build_locked "$tool")"
  ELAPSED[$tool]=$((SECONDS - start))
  RESULT[$tool]="$what"
}

build_locked() { # prints "built" or "cached" on stdout (everything else goes to stderr)
  local tool="$1" version dir tmp
  version="$(tool_version "$tool")"
  dir="$(tool_dir "$tool")"
  if present "$tool"; then # another process built it while we waited for the lock
    log "$tool $version cached at $dir (built by another process meanwhile)"
    echo cached
    return 0
  fi
  log "building $tool $version … (go $(go env GOVERSION), GOCACHE=$GOCACHE)"
  tmp="$(mktemp -d "$TOOLS_DIR/.build-$tool-XXXXXX")"
  chmod 0755 "$tmp"
  local start=$SECONDS
  if ! "build_$tool" "$(tool_src "$tool")" "$tmp" >&2; then
    rm -rf "$tmp"
    die "building $tool $version failed (see the go output above)"
  fi
  local bin
  for bin in $(tool_binaries "$tool"); do
    timeout 30 "$tmp/$bin" --version >/dev/null 2>&1 || { rm -rf "$tmp"; die "$tmp/$bin --version failed after build"; }
  done
  inputs_hash "$tool" >"$tmp/.stamp"
  rm -rf "$dir.old"
  [[ -e "$dir" ]] && mv "$dir" "$dir.old"
  mv "$tmp" "$dir"
  rm -rf "$dir.old"
  log "$tool $version built in $((SECONDS - start))s at $dir"
  echo built
}

env_lines() { # shell assignments for every tool that is present
  local tool bin var
  echo "# generated by deploy/local-stack/build-tools.sh — source it to find the telemetry tools"
  echo "export EXAI_TOOLS_DIR='$TOOLS_DIR'"
  for tool in "${ALL_TOOLS[@]}"; do
    present "$tool" || continue
    for bin in $(tool_binaries "$tool"); do
      var="EXAI_$(echo "$bin" | tr '[:lower:]' '[:upper:]' | tr - _)_BIN"
      echo "export $var='$(tool_dir "$tool")/$bin'"
    done
  done
}

write_env() {
  local f="$TOOLS_DIR/env.sh"
  env_lines >"$f.tmp" && mv "$f.tmp" "$f"
}

cmd_build() {
  local tools=("$@") tool total_start=$SECONDS
  [[ ${#tools[@]} -gt 0 ]] || tools=("${ALL_TOOLS[@]}")
  for tool in "${tools[@]}"; do tool_version "$tool" >/dev/null; done
  mkdir -p "$TOOLS_DIR"
  for tool in "${tools[@]}"; do ensure "$tool"; done
  write_env
  echo "[tools] summary (cache: $TOOLS_DIR, total $((SECONDS - total_start))s):"
  for tool in "${tools[@]}"; do
    local what="${RESULT[$tool]}"
    case "$what" in
      built) what="built in ${ELAPSED[$tool]}s" ;;
      cached) [[ ${ELAPSED[$tool]} -gt 0 ]] && what="cached (waited ${ELAPSED[$tool]}s)" ;;
    esac
    for bin in $(tool_binaries "$tool"); do
      printf '[tools]   %-14s %-8s %-16s %s\n' "$bin" "$(tool_version "$tool")" "$what" "$(tool_dir "$tool")/$bin"
    done
  done
  echo "[tools] env file: $TOOLS_DIR/env.sh  (or: $0 path <binary>)"
}

cmd_path() {
  [[ $# -eq 1 ]] || die "usage: $0 path BINARY"
  local tool bin="$1"
  tool="$(binary_tool "$bin")"
  [[ "$bin" == compose ]] && bin=docker-compose
  ensure "$tool"
  write_env
  echo "$(tool_dir "$tool")/$bin"
}

cmd_env() {
  local tool
  for tool in "${ALL_TOOLS[@]}"; do ensure "$tool"; done
  write_env
  env_lines
}

cmd_list() {
  local tool status
  for tool in "${ALL_TOOLS[@]}"; do
    if present "$tool"; then status=present; else status=missing; fi
    printf '%-13s %-8s %-8s %s\n' "$tool" "$(tool_version "$tool")" "$status" "$(tool_dir "$tool")"
  done
}

case "${1:-build}" in
  build) shift $(($# > 0 ? 1 : 0)); cmd_build "$@" ;;
  path) shift; cmd_path "$@" ;;
  env) cmd_env ;;
  list) cmd_list ;;
  clean-gocache) rm -rf "${EXAI_TOOLS_GOCACHE:-$TOOLS_DIR/.go-build}"; log "removed Go build cache" ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
  otelcol | prometheus | alertmanager | jaeger | compose) cmd_build "$@" ;;
  *) die "unknown command '$1' (try: $0 --help)" ;;
esac
