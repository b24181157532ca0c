#!/usr/bin/env bash
# What `make test` needs from the machine, checked before anything slow runs (the Makefile
# runs this first for test, test-integration and test-e2e; `make run` does not need it):
#
#   redis    redis-server on PATH                        (apt: redis-server)
#   postgres Postgres' initdb, /usr/lib/postgresql/*/bin (apt: postgresql)
#   go       Go >= 1.26.7, which builds the telemetry tools (`make tools`); never from apt:
#            Debian's golang-go is far older. The go on PATH counts, or /usr/local/go/bin/go
#            when no go is on PATH (build-tools.sh uses it then).
#   make     only when asked for by name (.ci/run bootstraps it this way)
#   docker   only when asked for by name (make test, make test-compose): a Docker engine
#            that answers, or dockerd installed and root to start it (apt: docker.io), and
#            debootstrap unless EXAI_COMPOSE_IMAGES=upstream (apt: debootstrap)
#
# Usage: ensure-deps.sh [--check] [redis] [postgres] [go] [make] [docker]
#        (default: redis postgres go)
#
# Everything present: prints nothing, exits 0. Something missing that apt can install
# (redis-server, postgresql, make), when root or with passwordless sudo (`sudo -n true`):
# `apt-get update` + `apt-get install -y` of just those packages, then stops the system
# services the packages started (the tests start their own servers on free ports). Otherwise,
# or when Go is missing too: one message naming each missing dependency and the command that
# installs it, exit 1, nothing installed.
#
# Environment:
#   EXAI_DEPS_INSTALL   auto (default) installs as above; never = check only (as --check)
#   EXAI_POSTGRES_LIB   where Debian puts Postgres' versioned directories (/usr/lib/postgresql)
#   EXAI_GO_DIRS        colon-separated directories where a Go not on PATH is looked for
#                       (default /usr/local/go/bin:$HOME/go/bin, as .ci/run)
set -euo pipefail

GO_NEED=1.26.7
GO_FALLBACK_DIR=/usr/local/go/bin # build-tools.sh uses this go when none is on PATH
MODE="${EXAI_DEPS_INSTALL:-auto}"
PG_LIB="${EXAI_POSTGRES_LIB:-/usr/lib/postgresql}"
GO_DIRS="${EXAI_GO_DIRS-$GO_FALLBACK_DIR:${HOME:-/root}/go/bin}"

say() { printf '[deps] %s\n' "$*" >&2; }

wanted=()
for arg in "$@"; do
  case "$arg" in
    --check) MODE=never ;;
    redis | postgres | go | make | docker) wanted+=("$arg") ;;
    -h | --help)
      sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
      exit 0
      ;;
    *)
      say "unknown argument '$arg' (usage: ensure-deps.sh [--check] [redis] [postgres] [go] [make] [docker])"
      exit 2
      ;;
  esac
done
((${#wanted[@]})) || wanted=(redis postgres go)
case "$MODE" in
  auto | never) ;;
  *)
    say "EXAI_DEPS_INSTALL must be 'auto' or 'never' (got '$MODE')"
    exit 2
    ;;
esac

# ------------------------------------------------------------------------------- checks
have_postgres() {
  local initdb
  for initdb in "$PG_LIB"/*/bin/initdb; do
    [[ -x "$initdb" ]] && return 0
  done
  return 1
}

# $1 >= $2 for dotted versions (1.26.10 > 1.26.9; a suffix like rc1 is ignored).
version_ge() {
  local IFS=. i a b
  local -a have need
  read -r -a have <<<"$1"
  read -r -a need <<<"$2"
  for ((i = 0; i < 3; i++)); do
    a="${have[i]:-0}" b="${need[i]:-0}"
    a="${a%%[!0-9]*}" b="${b%%[!0-9]*}"
    a="$((10#${a:-0}))" b="$((10#${b:-0}))"
    ((a > b)) && return 0
    ((a < b)) && return 1
  done
  return 0
}

# Prints the version of go binary $1 (1.26.8), or nothing if it does not run.
go_version() {
  local v
  v="$(GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null)" || return 0
  v="${v%% *}"
  printf '%s' "${v#go}"
}

go_problem="" # why Go does not count, and what to do
check_go() {
  local on_path used="" v dir
  on_path="$(command -v go || true)"
  if [[ -n "$on_path" ]]; then
    used="$on_path"
  elif [[ ":$GO_DIRS:" == *":$GO_FALLBACK_DIR:"* && -x "$GO_FALLBACK_DIR/go" ]]; then
    used="$GO_FALLBACK_DIR/go"
  fi
  if [[ -n "$used" ]]; then
    v="$(go_version "$used")"
    [[ -n "$v" ]] && version_ge "$v" "$GO_NEED" && return 0
  fi
  # A new enough Go that `make tools` would not pick: say how to put it first on PATH.
  local IFS=:
  for dir in $GO_DIRS; do
    [[ -n "$dir" && -x "$dir/go" && "$dir/go" != "$used" ]] || continue
    v="$(go_version "$dir/go")"
    if [[ -n "$v" ]] && version_ge "$v" "$GO_NEED"; then
      go_problem="go $v is in $dir but ${used:-no go is on PATH}${used:+ comes first on PATH}"
      go_problem+="; run: export PATH=\"$dir:\$PATH\""
      return 1
    fi
  done
  if [[ -n "$used" ]]; then
    v="$(go_version "$used")"
    go_problem="$used is ${v:+go }${v:-not working}${v:+, older than $GO_NEED}"
  else
    go_problem="no go on PATH"
  fi
  go_problem+="; install Go >= $GO_NEED from https://go.dev/dl/ (Debian's golang-go is too old)"
  go_problem+=" and put its bin directory on PATH"
  return 1
}

missing_pkgs=() # apt packages
missing_desc=() # one line per missing dependency
for dep in "${wanted[@]}"; do
  case "$dep" in
    redis)
      command -v redis-server >/dev/null 2>&1 && continue
      missing_pkgs+=(redis-server)
      missing_desc+=("redis-server (Redis, for the integration tests): not on PATH")
      ;;
    postgres)
      have_postgres && continue
      missing_pkgs+=(postgresql)
      missing_desc+=("Postgres (initdb, for the integration tests): no $PG_LIB/*/bin/initdb")
      ;;
    make)
      command -v make >/dev/null 2>&1 && continue
      missing_pkgs+=(make)
      missing_desc+=("make: not on PATH")
      ;;
    go)
      check_go && continue
      missing_desc+=("Go >= $GO_NEED (builds the telemetry tools): $go_problem")
      ;;
    docker)
      # The compose test (tests/compose) starts an engine itself (deploy/docker/engine.sh)
      # when dockerd is installed and it may run it, and builds its images from a
      # debootstrap base unless EXAI_COMPOSE_IMAGES=upstream.
      engine_answers=""
      command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1 && engine_answers=1
      if [[ -z "$engine_answers" ]] && ! command -v dockerd >/dev/null 2>&1; then
        missing_pkgs+=(docker.io)
        missing_desc+=("a Docker engine (for the compose test): no dockerd and none answers")
      elif [[ -z "$engine_answers" ]] && ((EUID != 0)) && ! sudo -n true >/dev/null 2>&1; then
        missing_desc+=("a running Docker engine (for the compose test): start one (sudo dockerd &) or run as root")
      fi
      if [[ "${EXAI_COMPOSE_IMAGES:-local}" != upstream ]] && ! command -v debootstrap >/dev/null 2>&1; then
        missing_pkgs+=(debootstrap)
        missing_desc+=("debootstrap (the compose test's base image, built here): not on PATH")
      fi
      ;;
  esac
done

((${#missing_desc[@]})) || exit 0

# ------------------------------------------------------------------ install or explain
as_root=() # prefix that runs a command as root
can_install=""
why_not=""
if [[ "$MODE" == never ]]; then
  why_not="check only (--check or EXAI_DEPS_INSTALL=never): nothing installed."
elif ((${#missing_pkgs[@]} < ${#missing_desc[@]})); then
  # Go (or a Docker engine) needs a hand anyway: say everything now, install nothing.
  if ((${#missing_pkgs[@]})); then
    why_not="nothing installed yet: make test installs the packages once the rest is there."
  fi
elif ! command -v apt-get >/dev/null 2>&1; then
  why_not="no apt-get here: that is the Debian/Ubuntu command; use your system's package manager."
elif ((EUID == 0)); then
  can_install=1
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  as_root=(sudo -n)
  can_install=1
else
  why_not="not root and no passwordless sudo, so not installed: run the command above."
fi

sudo_word=""
((EUID == 0)) || sudo_word="sudo "
apt_command="${sudo_word}apt-get update && ${sudo_word}apt-get install -y ${missing_pkgs[*]-}"

if [[ -z "$can_install" ]]; then
  say "missing what the tests need:"
  for line in "${missing_desc[@]}"; do say "  - $line"; done
  if ((${#missing_pkgs[@]})); then
    say "install ${missing_pkgs[*]} with:"
    say "    $apt_command"
  fi
  [[ -z "$why_not" ]] || say "$why_not"
  exit 1
fi

say "installing ${missing_pkgs[*]} with apt-get (about a minute)"
if ! out="$(
  ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq 2>&1 &&
    ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq "${missing_pkgs[@]}" 2>&1
)"; then
  printf '%s\n' "$out" >&2
  say "apt-get failed (output above); install them with:"
  say "    $apt_command"
  exit 1
fi
# Debian's packages start system services; the tests start their own on free ports.
for pkg in "${missing_pkgs[@]}"; do
  case "$pkg" in
    redis-server | postgresql)
      ${as_root[@]+"${as_root[@]}"} service "$pkg" stop >/dev/null 2>&1 || true
      ;;
  esac
done

still=()
for pkg in "${missing_pkgs[@]}"; do
  case "$pkg" in
    redis-server) command -v redis-server >/dev/null 2>&1 || still+=("$pkg") ;;
    postgresql) have_postgres || still+=("$pkg") ;;
    make) command -v make >/dev/null 2>&1 || still+=("$pkg") ;;
    docker.io) command -v dockerd >/dev/null 2>&1 || still+=("$pkg") ;;
    debootstrap) command -v debootstrap >/dev/null 2>&1 || still+=("$pkg") ;;
  esac
done
if ((${#still[@]})); then
  say "apt-get installed ${missing_pkgs[*]}, but ${still[*]} is still not found"
  exit 1
fi
say "installed ${missing_pkgs[*]}"
