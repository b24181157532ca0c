#!/usr/bin/env bash
# Build the telemetry tools of the no-Docker stack (and the Docker Compose CLI plugin that the
# tests use, and the Docker Buildx CLI plugin) from Go modules, at the versions pinned in
# deploy/local-stack/tools/versions.env, into a cache OUTSIDE the repo so that every clone on
# the machine reuses them:
#
#   ${EXAI_TOOLS_DIR:-$HOME/.cache/exai/tools}/<tool>-<version>/<binaries>
#
#   otelcol-0.161.0/otelcol            custom collector (deploy/local-stack/otelcol)
#   prometheus-3.16.0/{prometheus,promtool}
#   alertmanager-0.35.0/{alertmanager,amtool}
#   jaeger-2.13.0/jaeger               Jaeger v2 (module v1.76.0)
#   compose-5.6.0/docker-compose       Docker Compose CLI plugin (for `docker compose config`
#                                      in the tests; needs no Docker engine)
#   buildx-0.39.1/docker-buildx        Docker Buildx CLI plugin (BuildKit for the Docker client:
#                                      `docker buildx build --secret …` against a 20.10 engine)
#
# Usage:
#   build-tools.sh [build] [TOOL...]   build what is missing (default: all), several tools at a
#                                      time, with a progress line per tool and an ETA every ~15 s
#                                      (stderr); then a summary table with each tool's time;
#                                      writes ${EXAI_TOOLS_DIR}/env.sh
#   build-tools.sh path BINARY         print the absolute path of BINARY (otelcol, prometheus,
#                                      promtool, alertmanager, amtool, jaeger, docker-compose,
#                                      docker-buildx — `compose` and `buildx` are accepted for
#                                      them), building it first if missing; progress goes to
#                                      stderr, only the path to stdout
#   build-tools.sh env                 print shell assignments (EXAI_OTELCOL_BIN=… etc.), building
#                                      what is missing
#   build-tools.sh list                print TOOL VERSION STATUS DIR for each tool; builds nothing
#   build-tools.sh plan [TOOL...]      print what `build` would build, with the expected time of
#                                      each tool and in total; builds nothing
#   build-tools.sh clean-gocache       remove the Go build cache kept under the tools dir
#
# A tool counts as present when its binaries exist, each prints its version, and the stamp file
# written after the build matches the current inputs (version, go.mod/go.sum, sources, and the
# recipe: tags, flags, cgo); otherwise it is rebuilt. Each tool builds into a temporary
# directory and is moved into place whole, under a per-tool lock, so concurrent callers never
# see half a tool and never build the same tool twice. The go output of a build goes to
# ${EXAI_TOOLS_DIR}/.logs/<tool>-<version>.log; its tail is printed when the build fails.
# How long each build took is kept in ${EXAI_TOOLS_DIR}/.durations/ and is the ETA of the next
# build of that tool; until then the ETA is the cold-build figure in tools/versions.env.
#
# Environment:
#   EXAI_TOOLS_DIR         cache root (default $HOME/.cache/exai/tools)
#   EXAI_TOOLS_GOCACHE     Go build cache shared by these builds (default $EXAI_TOOLS_DIR/.go-build)
#   EXAI_TOOLS_JOBS        how many tools build at the same time (default 2; 1 = one after another)
#   EXAI_TOOLS_FETCH_JOBS  module downloads in flight at once before each build (default 16)
#   EXAI_TOOLS_PROGRESS    seconds between progress lines (default 15)
#   GOTOOLCHAIN            defaults to "local": the machine's Go (>= 1.26.7 needed; compose
#                          v5.6.0 and buildx v0.39.1 need >= 1.26.8) is used as is
#   GOMODCACHE, GOPROXY    honoured as usual (the module proxy is the only network access needed)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=tools/versions.env
source "$HERE/tools/versions.env"

TOOLS_DIR="${EXAI_TOOLS_DIR:-${HOME:-/root}/.cache/exai/tools}"
ALL_TOOLS=(otelcol prometheus alertmanager jaeger compose buildx)
JOBS="${EXAI_TOOLS_JOBS:-2}"
FETCH_JOBS="${EXAI_TOOLS_FETCH_JOBS:-16}"
PROGRESS_EVERY="${EXAI_TOOLS_PROGRESS:-15}"

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "EXAI_TOOLS_JOBS must be a positive integer (got '$JOBS')"
[[ "$FETCH_JOBS" =~ ^[1-9][0-9]*$ ]] || die "EXAI_TOOLS_FETCH_JOBS must be a positive integer (got '$FETCH_JOBS')"
[[ "$PROGRESS_EVERY" =~ ^[1-9][0-9]*$ ]] || die "EXAI_TOOLS_PROGRESS must be a positive integer (got '$PROGRESS_EVERY')"

# ---------------------------------------------------------------------------- tool tables
tool_version() {
  case "$1" in
    otelcol) echo "$OTELCOL_VERSION" ;;
    prometheus) echo "$PROMETHEUS_VERSION" ;;
    alertmanager) echo "$ALERTMANAGER_VERSION" ;;
    jaeger) echo "$JAEGER_VERSION" ;;
    compose) echo "$COMPOSE_VERSION" ;;
    buildx) echo "$BUILDX_VERSION" ;;
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
    buildx) echo docker-buildx ;;
  esac
}
binary_tool() {
  case "$1" in
    otelcol) echo otelcol ;;
    prometheus | promtool) echo prometheus ;;
    alertmanager | amtool) echo alertmanager ;;
    jaeger) echo jaeger ;;
    docker-compose | compose) echo compose ;;
    docker-buildx | buildx) echo buildx ;;
    *) die "unknown binary '$1' (known: otelcol prometheus promtool alertmanager amtool jaeger docker-compose docker-buildx)" ;;
  esac
}
version_arg() { # BINARY: the argument that makes it print its version and exit
  case "$1" in
    docker-buildx) echo version ;; # a `version` command, no --version flag
    *) echo --version ;;
  esac
}
tool_src() { # the Go module that is built
  case "$1" in
    otelcol) echo "$HERE/otelcol" ;;
    *) echo "$HERE/tools/$1" ;;
  esac
}
tool_dir() { echo "$TOOLS_DIR/$1-$(tool_version "$1")"; }
tool_log() { echo "$TOOLS_DIR/.logs/$1-$(tool_version "$1").log"; }

# Cold-build estimate (seconds) for the ETA: the last build of this version on this machine,
# else the figure measured on a fresh 2-core machine (tools/versions.env).
estimate() {
  local tool="$1" f var
  f="$TOOLS_DIR/.durations/$tool-$(tool_version "$tool")"
  if [[ -r "$f" && "$(cat "$f")" =~ ^[0-9]+$ ]]; then
    cat "$f"
    return 0
  fi
  var="$(echo "$tool" | tr '[:lower:]' '[:upper:]')_BUILD_SECONDS"
  echo "${!var:-300}"
}
estimate_text() {
  local tool="$1"
  if [[ -r "$TOOLS_DIR/.durations/$tool-$(tool_version "$tool")" ]]; then
    echo "~$(estimate "$tool") s last time here"
  else
    echo "typically ~$(estimate "$tool") s cold"
  fi
}
human() { # SECONDS -> "45 s" / "3 min 20 s"
  if (($1 < 90)); then echo "$1 s"; else echo "$(($1 / 60)) min $(($1 % 60)) s"; fi
}

# ---------------------------------------------------------------------------- recipes
# Everything that shapes a binary besides the sources. Each builder uses exactly these values,
# and recipe() is part of the stamp, so changing any of them rebuilds the tool.
GO_BUILD_FLAGS=(-trimpath)  # with CGO_ENABLED=0, -mod=readonly, -buildvcs=false (setup_go)
STRIP_LDFLAGS="-s -w"       # no symbol table, no DWARF: smaller binaries, faster links
# Prometheus: `remove_all_sd` leaves out every service-discovery plugin except the ones in
# plugins/minimum.go (file_sd and http_sd); static_configs are not a plugin. The stack only
# uses file_sd_configs. Add `enable_<name>_sd` here to bring one back (e.g. enable_dns_sd).
# No `builtinassets`: the React UI is an npm build that the Go module does not carry.
PROMETHEUS_TAGS="netgo remove_all_sd"
ALERTMANAGER_TAGS="netgo"
OTELCOL_TAGS=""
JAEGER_TAGS=""
COMPOSE_TAGS=""
BUILDX_TAGS=""

tool_tags() {
  case "$1" in
    otelcol) echo "$OTELCOL_TAGS" ;;
    prometheus) echo "$PROMETHEUS_TAGS" ;;
    alertmanager) echo "$ALERTMANAGER_TAGS" ;;
    jaeger) echo "$JAEGER_TAGS" ;;
    compose) echo "$COMPOSE_TAGS" ;;
    buildx) echo "$BUILDX_TAGS" ;;
  esac
}
tool_packages() { # the main packages built, relative to the tool's module
  case "$1" in
    otelcol) echo . ;;
    prometheus) echo github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool ;;
    alertmanager) echo github.com/prometheus/alertmanager/cmd/alertmanager github.com/prometheus/alertmanager/cmd/amtool ;;
    jaeger) echo github.com/jaegertracing/jaeger/cmd/jaeger ;;
    compose) echo github.com/docker/compose/v5/cmd ;;
    buildx) echo github.com/docker/buildx/cmd/buildx ;;
  esac
}
recipe() {
  local tool="$1" tags x
  tags="$(tool_tags "$tool")"
  case "$tool" in
    otelcol) x="" ;;
    prometheus) x="-X prometheus/common/version.*" ;;
    alertmanager) x="-X prometheus/common/version.* ui=placeholder.gz" ;;
    jaeger) x="-X jaeger/internal/version.*" ;;
    compose) x="-X compose/internal.Version" ;;
    buildx) x="-X buildx/version.*" ;;
  esac
  echo "${GO_BUILD_FLAGS[*]}${tags:+ -tags=$tags} -ldflags=$STRIP_LDFLAGS${x:+ $x}"
}

inputs_hash() {
  local tool="$1" src
  src="$(tool_src "$tool")"
  {
    echo "tool=$tool version=$(tool_version "$tool") flags=$(recipe "$tool") cgo=0"
    (cd "$src" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) ! -name '*_test.go' -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
}

# present TOOL: 0 if every binary exists, prints its version, and the stamp matches the inputs.
present() {
  local tool="$1" dir bin
  dir="$(tool_dir "$tool")"
  [[ -f "$dir/.stamp" ]] || return 1
  [[ "$(cat "$dir/.stamp")" == "$(inputs_hash "$tool")" ]] || return 1
  for bin in $(tool_binaries "$tool"); do
    [[ -x "$dir/$bin" ]] || return 1
    timeout 30 "$dir/$bin" "$(version_arg "$bin")" >/dev/null 2>&1 || return 1
  done
}

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
  have="$(go env GOVERSION)" || die "'go env GOVERSION' failed"
  have="${have#go}"
  if [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]]; then
    die "go $have is older than $need (needed by the pinned modules); install a newer Go"
  fi
  GO_VERSION="go$have"
  _GO_READY=1
}

# The go commands that only resolve and download run with GOMAXPROCS=$FETCH_JOBS: the go
# command downloads up to GOMAXPROCS modules at once, and the default (the number of cores)
# leaves a 2-core machine waiting on the network instead of compiling.
go_fetching() { GOMAXPROCS="$FETCH_JOBS" go "$@"; }

# Check that the module graph resolves to exactly the pinned version.
check_pin() {
  local src="$1" mod="$2" want="$3" got
  got="$(cd "$src" && go_fetching list -m -f '{{.Version}}' "$mod")" ||
    die "cannot resolve $mod in $src (is the Go module proxy reachable?)"
  [[ "$got" == "$want" ]] ||
    die "$mod resolves to $got in $src but tools/versions.env pins $want; update that module (see versions.env)"
}

# Download exactly the modules that the packages to build need (not every module in go.sum),
# many at once. -e: report nothing here; `go build` reports any problem right after.
prefetch() {
  local tool="$1" src pkgs
  src="$(tool_src "$tool")"
  read -r -a pkgs <<<"$(tool_packages "$tool")"
  (cd "$src" && go_fetching list -e -deps -tags "$(tool_tags "$tool")" "${pkgs[@]}" >/dev/null)
}

# go_build SRC TAGS LDFLAGS OUT PKG... [-- extra go build args]: one `go build` for all of a
# tool's binaries, so they share one load of the packages and link in parallel. OUT ending in
# / makes go name each binary after its package directory.
go_build() {
  local src="$1" tags="$2" ldflags="$3" out="$4"
  shift 4
  (cd "$src" && go build "${GO_BUILD_FLAGS[@]}" -tags "$tags" -ldflags "$ldflags" -o "$out" "$@")
}

# ---------------------------------------------------------------------------- builders
# Each builder gets the tool's source dir and an empty output dir.
build_otelcol() {
  local src="$1" out="$2"
  check_pin "$src" go.opentelemetry.io/collector/otelcol "v$OTELCOL_VERSION"
  check_pin "$src" github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor "v$OTELCOL_VERSION"
  check_pin "$src" go.opentelemetry.io/collector/component "v$OTELCOL_CORE_STABLE_VERSION"
  prefetch otelcol
  go_build "$src" "$OTELCOL_TAGS" "$STRIP_LDFLAGS" "$out/otelcol" .
}

prom_ldflags() { # VERSION REVISION
  local v="github.com/prometheus/common/version"
  printf -- '%s -X %s.Version=%s -X %s.Revision=%s -X %s.Branch=HEAD -X %s.BuildUser=exai-build-tools -X %s.BuildDate=%s' \
    "$STRIP_LDFLAGS" "$v" "$1" "$v" "$2" "$v" "$v" "$v" "$(date -u +%Y%m%d-%H:%M:%S)"
}

build_prometheus() {
  local src="$1" out="$2"
  check_pin "$src" github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION"
  prefetch prometheus
  # shellcheck disable=SC2046 # the package list is words by design
  go_build "$src" "$PROMETHEUS_TAGS" "$(prom_ldflags "$PROMETHEUS_VERSION" "$PROMETHEUS_MODULE_VERSION")" \
    "$out/" $(tool_packages prometheus)
}

build_alertmanager() {
  local src="$1" out="$2" moddir work
  check_pin "$src" github.com/prometheus/alertmanager "v$ALERTMANAGER_VERSION"
  prefetch alertmanager
  (cd "$src" && go_fetching mod download github.com/prometheus/alertmanager)
  # ui/web.go embeds ui/app/dist, which an npm build makes and the Go module does not carry,
  # so the module cannot be built as downloaded (and `go build -overlay` may not touch files
  # in GOMODCACHE). So: copy the downloaded module into the build dir, add a placeholder page
  # at ui/app/dist/{elm,mantine}/index.html, and build against that copy through a temporary
  # modfile (= the committed go.mod + a replace), leaving the committed go.mod/go.sum alone.
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
  # shellcheck disable=SC2046 # the package list is words by design
  go_build "$src" "$ALERTMANAGER_TAGS" "$(prom_ldflags "$ALERTMANAGER_VERSION" "v$ALERTMANAGER_VERSION")" \
    "$out/" -modfile "$work/go.mod" $(tool_packages alertmanager)
  rm -rf "$work"
}

build_jaeger() {
  local src="$1" out="$2" v="github.com/jaegertracing/jaeger/internal/version"
  check_pin "$src" github.com/jaegertracing/jaeger "$JAEGER_MODULE_VERSION"
  prefetch jaeger
  go_build "$src" "$JAEGER_TAGS" \
    "$STRIP_LDFLAGS -X $v.latestVersion=v$JAEGER_VERSION -X $v.commitSHA=$JAEGER_MODULE_VERSION -X $v.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "$out/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
}

build_compose() {
  local src="$1" out="$2"
  check_pin "$src" github.com/docker/compose/v5 "v$COMPOSE_VERSION"
  prefetch compose
  # As upstream's Makefile builds it (CGO off, -trimpath, internal.Version set), minus the
  # `e2e` tag, which only selects test files. The binary works standalone (docker-compose …)
  # and as a Docker CLI plugin (~/.docker/cli-plugins/docker-compose → `docker compose …`).
  go_build "$src" "$COMPOSE_TAGS" \
    "$STRIP_LDFLAGS -X github.com/docker/compose/v5/internal.Version=v$COMPOSE_VERSION" \
    "$out/docker-compose" github.com/docker/compose/v5/cmd
}

build_buildx() {
  local src="$1" out="$2" v="github.com/docker/buildx/version"
  check_pin "$src" github.com/docker/buildx "v$BUILDX_VERSION"
  prefetch buildx
  # As upstream's Dockerfile builds it (CGO off, -trimpath, -s -w, version.Version/.Revision/
  # .Package set; Revision is upstream's commit, which the module proxy does not give, so the
  # module version). Works standalone (docker-buildx version) and as a Docker CLI plugin
  # (<DOCKER_CONFIG>/cli-plugins/docker-buildx → `docker buildx …`, and `docker build` uses it).
  go_build "$src" "$BUILDX_TAGS" \
    "$STRIP_LDFLAGS -X $v.Version=v$BUILDX_VERSION -X $v.Revision=v$BUILDX_VERSION -X $v.Package=github.com/docker/buildx" \
    "$out/docker-buildx" github.com/docker/buildx/cmd/buildx
}

# ---------------------------------------------------------------------------- one tool
with_tool_lock() { # TOOL CMD...: run CMD holding TOOL's lock (one build of a tool at a time)
  local tool="$1"
  shift
  if command -v flock >/dev/null 2>&1; then
    (
      flock -w 3600 9 || die "timed out after 1 h waiting for $TOOLS_DIR/.lock-$tool"
      "$@"
    ) 9>"$TOOLS_DIR/.lock-$tool"
  else
    "$@"
  fi
}

# build_locked TOOL RUNDIR: prints "built SECONDS" or "cached" on stdout. Everything else goes
# to the tool's log. Touches RUNDIR/TOOL.started once it holds the lock and builds.
build_locked() {
  local tool="$1" run="$2" version dir tmp logfile start bin rc
  version="$(tool_version "$tool")"
  dir="$(tool_dir "$tool")"
  if present "$tool"; then # another process built it while we waited for the lock
    echo cached
    return 0
  fi
  touch "$run/$tool.started"
  logfile="$(tool_log "$tool")"
  mkdir -p "$(dirname "$logfile")"
  : >"$logfile"
  exec 2>>"$logfile"
  log "building $tool $version with $GO_VERSION (GOCACHE=$GOCACHE, GOMODCACHE=$(go env GOMODCACHE))"
  log "recipe: $(recipe "$tool")"
  tmp="$run/build-$tool" # inside TOOLS_DIR: the final mv is a rename on the same filesystem
  rm -rf "$tmp"
  mkdir -m 0755 "$tmp"
  start=$SECONDS
  # In a subshell with errexit on (an `if` would switch it off inside the builder), timed:
  # wall, user and system CPU seconds (CPU time hardly depends on what else the machine runs).
  set +e
  local TIMEFORMAT='%R %U %S' times cpu
  { time (set -e; "build_$tool" "$(tool_src "$tool")" "$tmp" >>"$logfile" 2>&1); } 2>"$run/$tool.time"
  rc=$?
  set -e
  times="$(cat "$run/$tool.time" 2>/dev/null || true)"
  cpu="$(awk '{ printf "%d", $2 + $3 }' <<<"$times" 2>/dev/null || true)"
  [[ "$cpu" =~ ^[0-9]+$ ]] || cpu="?"
  if ((rc != 0)); then
    rm -rf "$tmp"
    die "building $tool $version failed (go output above)"
  fi
  for bin in $(tool_binaries "$tool"); do
    [[ -x "$tmp/$bin" ]] || { rm -rf "$tmp"; die "the build made no $bin"; }
    timeout 30 "$tmp/$bin" "$(version_arg "$bin")" >/dev/null 2>&1 ||
      { rm -rf "$tmp"; die "$bin $(version_arg "$bin") failed after the build"; }
  done
  inputs_hash "$tool" >"$tmp/.stamp"
  rm -rf "$dir.old"
  if [[ -e "$dir" ]]; then mv "$dir" "$dir.old"; fi
  mv "$tmp" "$dir"
  rm -rf "$dir.old"
  local took=$((SECONDS - start))
  mkdir -p "$TOOLS_DIR/.durations"
  echo "$took" >"$TOOLS_DIR/.durations/.$tool.tmp.$$" &&
    mv "$TOOLS_DIR/.durations/.$tool.tmp.$$" "$TOOLS_DIR/.durations/$tool-$version"
  log "$tool $version built in ${took}s (CPU ${cpu}s) at $dir"
  echo "built $took $cpu"
}

# ---------------------------------------------------------------------------- scheduler
declare -A RESULT=() ELAPSED=() CPU=()
RUN_DIR=""
declare -A JOB_PID=() JOB_START=()

descendants() { # PID: the PIDs of every process below PID
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}
stop_jobs() { # stop every build this run started (whole process trees: go, compile, link)
  local tool pids=()
  for tool in "${!JOB_PID[@]}"; do
    [[ -e "$RUN_DIR/$tool.rc" ]] && continue
    # shellcheck disable=SC2207
    pids+=("${JOB_PID[$tool]}" $(descendants "${JOB_PID[$tool]}"))
  done
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null
  wait 2>/dev/null || true
}
on_exit() {
  local rc=$?
  stop_jobs
  [[ -n "$RUN_DIR" ]] && rm -rf "$RUN_DIR"
  return $rc
}
on_signal() {
  trap - INT TERM
  log "interrupted: stopping the builds (finished tools stay cached)"
  exit 130
}

start_run() { # the per-invocation scratch dir, inside TOOLS_DIR, removed on exit
  [[ -n "$RUN_DIR" ]] && return 0
  mkdir -p "$TOOLS_DIR"
  local old
  for old in "$TOOLS_DIR"/.run-*; do # left by a run that was killed outright
    [[ -d "$old" ]] || continue
    if [[ -r "$old/pid" ]] && kill -0 "$(cat "$old/pid")" 2>/dev/null; then continue; fi
    rm -rf "$old"
  done
  RUN_DIR="$(mktemp -d "$TOOLS_DIR/.run-XXXXXX")"
  echo $$ >"$RUN_DIR/pid"
  trap on_exit EXIT
  trap on_signal INT TERM
}

# ETA of the whole run: what is left of each running build (its estimate minus its elapsed
# time, at least 10 s), then the queued ones, each placed on the slot that frees up first.
eta() { # QUEUED_TOOL... (running tools come from JOB_START)
  local slots=() tool i best left
  for tool in "${!JOB_START[@]}"; do
    [[ -e "$RUN_DIR/$tool.rc" ]] && continue
    left=$(($(estimate "$tool") - (SECONDS - JOB_START[$tool])))
    ((left < 10)) && left=10
    slots+=("$left")
  done
  while ((${#slots[@]} < JOBS)); do slots+=(0); done
  for tool in "$@"; do
    best=0
    for i in "${!slots[@]}"; do ((slots[i] < slots[best])) && best=$i; done
    slots[best]=$((slots[best] + $(estimate "$tool")))
  done
  left=0
  for i in "${slots[@]}"; do ((i > left)) && left=$i; done
  echo "$left"
}

longest_first() { # TOOL...: sorted by estimate, longest first (shortest overall wall time)
  local tool
  for tool in "$@"; do echo "$(estimate "$tool") $tool"; done | sort -k1,1nr -k2,2 | cut -d' ' -f2
}

# build_tools TOOL...: build the missing ones, JOBS at a time; fills RESULT/ELAPSED. Progress
# on stderr. Returns 1 if any build failed (after the others have finished).
build_tools() {
  local tool missing=() queue=() running=() still failed=() n_total n_done=0 next_report
  for tool in "$@"; do
    if present "$tool"; then
      RESULT[$tool]=cached
      ELAPSED[$tool]=0
    else
      missing+=("$tool")
    fi
  done
  ((${#missing[@]})) || return 0
  setup_go
  start_run
  mapfile -t queue < <(longest_first "${missing[@]}")
  n_total=${#queue[@]}
  log "building ${queue[*]} — up to $JOBS at a time, about $(human "$(eta "${queue[@]}")") in all ($GO_VERSION; go output in $TOOLS_DIR/.logs/)"
  next_report=$((SECONDS + PROGRESS_EVERY))
  while ((${#queue[@]} + ${#running[@]})); do
    while ((${#queue[@]})) && ((${#running[@]} < JOBS)); do
      tool="${queue[0]}"
      queue=("${queue[@]:1}")
      (
        set +e
        (set -e; with_tool_lock "$tool" build_locked "$tool" "$RUN_DIR" >"$RUN_DIR/$tool.out" 2>"$RUN_DIR/$tool.err")
        echo $? >"$RUN_DIR/$tool.rc"
      ) &
      JOB_PID[$tool]=$!
      JOB_START[$tool]=$SECONDS
      running+=("$tool")
      log "building $tool $(tool_version "$tool") ($(estimate_text "$tool")) …"
    done
    sleep 1
    still=()
    for tool in "${running[@]}"; do
      if [[ ! -e "$RUN_DIR/$tool.rc" ]]; then
        still+=("$tool")
        continue
      fi
      wait "${JOB_PID[$tool]}" 2>/dev/null || true
      n_done=$((n_done + 1))
      local rc out
      rc="$(cat "$RUN_DIR/$tool.rc")"
      out="$(cat "$RUN_DIR/$tool.out" 2>/dev/null || true)"
      if [[ "$rc" == 0 && "$out" == built* ]]; then
        RESULT[$tool]=built
        read -r _ "ELAPSED[$tool]" "CPU[$tool]" <<<"$out"
        log "$tool $(tool_version "$tool") built in $(human "${ELAPSED[$tool]}") ($n_done/$n_total done)"
      elif [[ "$rc" == 0 ]]; then
        RESULT[$tool]=cached
        ELAPSED[$tool]=$((SECONDS - JOB_START[$tool]))
        log "$tool $(tool_version "$tool") was built by another process meanwhile ($n_done/$n_total done)"
      else
        RESULT[$tool]=failed
        ELAPSED[$tool]=$((SECONDS - JOB_START[$tool]))
        failed+=("$tool")
        log "$tool $(tool_version "$tool") FAILED after $(human "${ELAPSED[$tool]}"); last lines of $(tool_log "$tool"):"
        if [[ -e "$RUN_DIR/$tool.started" ]]; then
          tail -n 40 "$(tool_log "$tool")" 2>/dev/null | sed 's/^/    /' >&2 || true
        fi
        sed 's/^/    /' "$RUN_DIR/$tool.err" >&2 || true
      fi
    done
    running=("${still[@]}")
    if ((${#running[@]})) && ((SECONDS >= next_report)); then
      next_report=$((SECONDS + PROGRESS_EVERY))
      for tool in "${running[@]}"; do
        if [[ -e "$RUN_DIR/$tool.started" ]]; then
          log "building $tool $(tool_version "$tool") ($(estimate_text "$tool")) … $((SECONDS - JOB_START[$tool])) s elapsed"
        else
          log "waiting for another process building $tool $(tool_version "$tool") … $((SECONDS - JOB_START[$tool])) s elapsed"
        fi
      done
      log "$n_done/$n_total done, ${#running[@]} building, ${#queue[@]} queued: about $(human "$(eta "${queue[@]}")") left"
    fi
  done
  ((${#failed[@]} == 0)) || {
    log "failed: ${failed[*]} (full go output: $TOOLS_DIR/.logs/)"
    return 1
  }
}

# ---------------------------------------------------------------------------- commands
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
  mkdir -p "$TOOLS_DIR"
  env_lines >"$f.tmp.$$" && mv "$f.tmp.$$" "$f"
}

cmd_build() {
  local tools=("$@") tool total_start=$SECONDS rc=0
  [[ ${#tools[@]} -gt 0 ]] || tools=("${ALL_TOOLS[@]}")
  for tool in "${tools[@]}"; do tool_version "$tool" >/dev/null; done
  mkdir -p "$TOOLS_DIR"
  build_tools "${tools[@]}" || rc=1
  write_env
  echo "[tools] summary (cache: $TOOLS_DIR, total $(human $((SECONDS - total_start))), up to $JOBS builds at a time):"
  printf '[tools]   %-13s %-8s %-8s %12s %8s  %s\n' TOOL VERSION RESULT TIME CPU BINARIES
  for tool in "${tools[@]}"; do
    local bins=() bin took=- cpu=-
    for bin in $(tool_binaries "$tool"); do bins+=("$(tool_dir "$tool")/$bin"); done
    [[ ${RESULT[$tool]} == cached && ${ELAPSED[$tool]} == 0 ]] || took="$(human "${ELAPSED[$tool]}")"
    [[ -z "${CPU[$tool]:-}" ]] || cpu="${CPU[$tool]} s"
    printf '[tools]   %-13s %-8s %-8s %12s %8s  %s\n' "$tool" "$(tool_version "$tool")" "${RESULT[$tool]}" \
      "$took" "$cpu" "${bins[*]}"
  done
  echo "[tools] env file: $TOOLS_DIR/env.sh  (or: $0 path <binary>)"
  return $rc
}

cmd_path() {
  [[ $# -eq 1 ]] || die "usage: $0 path BINARY"
  local tool bin="$1"
  tool="$(binary_tool "$bin")"
  case "$bin" in
    compose) bin=docker-compose ;;
    buildx) bin=docker-buildx ;;
  esac
  build_tools "$tool" || die "cannot provide $bin"
  write_env
  echo "$(tool_dir "$tool")/$bin"
}

cmd_env() {
  build_tools "${ALL_TOOLS[@]}" || die "some tools failed to build"
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

cmd_plan() {
  local tools=("$@") tool missing=()
  [[ ${#tools[@]} -gt 0 ]] || tools=("${ALL_TOOLS[@]}")
  for tool in "${tools[@]}"; do
    tool_version "$tool" >/dev/null
    if present "$tool"; then
      printf '%-13s %-8s %-8s %s\n' "$tool" "$(tool_version "$tool")" present -
    else
      printf '%-13s %-8s %-8s %s\n' "$tool" "$(tool_version "$tool")" build "$(estimate_text "$tool")"
      missing+=("$tool")
    fi
  done
  if ((${#missing[@]})); then
    echo "total: about $(human "$(eta "${missing[@]}")") with up to $JOBS builds at a time"
  else
    echo "total: 0 s (everything is built)"
  fi
}

case "${1:-build}" in
  build) shift $(($# > 0 ? 1 : 0)); cmd_build "$@" ;;
  path) shift; cmd_path "$@" ;;
  env) cmd_env ;;
  list) cmd_list ;;
  plan) shift; cmd_plan "$@" ;;
  clean-gocache) rm -rf "${EXAI_TOOLS_GOCACHE:-$TOOLS_DIR/.go-build}"; log "removed Go build cache" ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
  otelcol | prometheus | alertmanager | jaeger | compose | buildx) cmd_build "$@" ;;
  *) die "unknown command '$1' (try: $0 --help)" ;;
esac
