#!/usr/bin/env bash
# A Docker engine and the client plugins the compose stack needs, on a machine without
# systemd (CI, a dev container): what `make compose-images` and `make test-compose` run
# first. Where an engine already answers (Docker Desktop, a systemd dockerd), it is used
# as it is and nothing is started or stopped.
#
#   engine.sh start   make `docker info` answer: install Debian's docker.io when dockerd
#                     is missing (as root or with passwordless sudo; else print the one
#                     command to run and fail), start dockerd in the background, wait for
#                     it; then make sure `docker compose` and `docker buildx` work
#                     (plugins built by deploy/local-stack/build-tools.sh when missing).
#                     Prints "started" when it started the engine, "running" otherwise.
#   engine.sh stop    stop the engine this script started (nothing else).
#   engine.sh status  exit 0 when an engine answers.
#
# The engine it starts keeps its images and build cache in $EXAI_DOCKER_DIR/data
# (default ~/.cache/exai/docker/data), outside the repo, so fresh clones and later runs
# reuse every image layer; it listens on the default socket, so plain `docker` and
# `docker compose` commands reach it. Its log: $EXAI_DOCKER_DIR/dockerd.log.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="$HERE/../local-stack/build-tools.sh"
DOCKER_DIR="${EXAI_DOCKER_DIR:-${HOME:-/root}/.cache/exai/docker}"
PIDFILE="$DOCKER_DIR/dockerd.pid"
LOG="$DOCKER_DIR/dockerd.log"
START_TIMEOUT_S="${EXAI_DOCKER_START_TIMEOUT_S:-60}"

log() { printf '[engine] %s\n' "$*" >&2; }
die() { printf '[engine] ERROR: %s\n' "$*" >&2; exit 1; }

answers() { timeout 10 docker info >/dev/null 2>&1; }

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

# Debian's engine, and debootstrap for images.sh's base image.
install_engine() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  ((${#missing[@]})) || return 0
  as_root true || die "missing ${missing[*]}; run: sudo apt-get install ${missing[*]}"
  log "installing Debian's ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_engine() {
  mkdir -p "$DOCKER_DIR/data"
  as_root true || die "dockerd is not running and starting it needs root; run: sudo dockerd &"
  log "starting dockerd (data: $DOCKER_DIR/data, log: $LOG)"
  # setsid + no inherited stdio: the engine outlives this script without holding the
  # caller's output open (CI waits for that to close).
  as_root setsid dockerd --data-root "$DOCKER_DIR/data" --exec-root /run/exai-docker \
    --pidfile "$PIDFILE" </dev/null >"$LOG" 2>&1 &
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until answers; do
    ((SECONDS < deadline)) || die "dockerd did not answer within ${START_TIMEOUT_S}s; last lines of $LOG: $(tail -n 5 "$LOG")"
    sleep 1
  done
}

# The client finds plugins in $DOCKER_CONFIG/cli-plugins (default ~/.docker). A plugin
# already there (or installed system-wide) is kept; a missing one is linked to the build
# from Go modules.
ensure_plugin() {
  local name="$1" binary="$2" dir path
  docker "$name" version >/dev/null 2>&1 && return 0
  dir="${DOCKER_CONFIG:-${HOME:-/root}/.docker}/cli-plugins"
  path="$(bash "$TOOLS" path "$binary")"
  mkdir -p "$dir"
  ln -sf "$path" "$dir/$binary"
  docker "$name" version >/dev/null 2>&1 || die "docker $name does not work with $path"
  log "docker $name: $path"
}

cmd_start() {
  command -v docker >/dev/null || die "no docker client on PATH; run: sudo apt-get install docker.io"
  if answers; then
    echo running
  else
    install_engine
    start_engine
    echo started
  fi
  ensure_plugin compose docker-compose
  ensure_plugin buildx docker-buildx
}

cmd_stop() {
  [[ -s "$PIDFILE" ]] || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  kill -0 "$pid" 2>/dev/null || return 0
  log "stopping dockerd ($pid)"
  as_root kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
  done
  die "dockerd ($pid) did not stop within 60 s"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) answers ;;
  *) die "usage: $0 start|stop|status" ;;
esac
