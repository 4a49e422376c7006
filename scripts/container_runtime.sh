#!/usr/bin/env bash
# A Docker-API container runtime for `make compose-test` on a root Debian machine with no Docker engine and no
# image registry in reach: Debian's podman (4.3) with runc, served as a Docker API socket that the Docker Compose
# v2 binary from requirements/deploy.txt drives (DOCKER_HOST). Idempotent: installs, configures and starts only
# what is missing, and builds the local base images once (podman keeps them).
#
#   scripts/container_runtime.sh        # prints LLMOPS_PYTHON_IMAGE=, LLMOPS_REDIS_IMAGE= and (last) DOCKER_HOST= lines
#   scripts/container_runtime.sh stop   # ends the API service and the healthcheck ticker it started
#   scripts/container_runtime.sh probe  # exit 0 when the API service starts a container, 1 when it cannot
#
# Exit status: 0 ready; 3 "skip: <reason>" (no runtime can run here: not root, not Debian, no podman to install);
# anything else is a real failure. A DOCKER_HOST that already answers (a real Docker engine) is used as it is.
#
# Why each setting (checked on these machines):
#   - runc, not crun: crun's setrlimit is refused here and the cgroups are in hybrid (v1) mode.
#   - default_ulimits = []: podman would otherwise set an nofile ulimit the sandbox does not permit.
#   - A running API service is probed with a real container start, not only /_ping: podman 4.3's service can
#     wedge so that /_ping and /version answer while every container start fails ("write child: broken pipe"; a
#     plain `podman run` still works). A wedged service the script started is restarted (about a second).
#   - Local base images: nothing can be pulled from a registry, so a Debian bookworm rootfs (debootstrap
#     --variant=minbase, from the Debian mirror) + python3.11 is imported with `podman import`; the service
#     Dockerfiles build FROM it through their PYTHON_IMAGE build argument. Redis comes from the same base.
set -euo pipefail

SOCKET_DIR="${LLMOPS_PODMAN_SOCKET_DIR:-/run/llmops-podman}"
SOCKET="$SOCKET_DIR/podman.sock"
BASE_IMAGE="${LLMOPS_BASE_IMAGE:-localhost/llmops-base/python:3.11-bookworm}"
REDIS_IMAGE="${LLMOPS_LOCAL_REDIS_IMAGE:-localhost/llmops-base/redis:7-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CONF=/etc/containers/containers.conf.d/50-llmops-runc.conf

TICKER_PID="$SOCKET_DIR/healthcheck-ticker.pid"

skip() { echo "skip: $*"; exit 3; }
log() { echo "container_runtime: $*" >&2; }
answers() { curl -fsS --max-time 3 --unix-socket "$1" http://d/_ping >/dev/null 2>&1; }
# Start a daemon that outlives this script (setsid + nohup: and the make recipe that ran it) with no file descriptor
# but stdin/stdout/stderr. Callers run this under `flock /tmp/llmops-platform.lock ...`, which hands its lock's
# descriptor down: a daemon that kept it would hold the lock for as long as it runs, and every later `flock` of the
# platform's tests would wait forever. The descriptors are closed in a foreground subshell before the daemon is
# forked, so the daemon never holds them, not even for a moment after detach returns (closing them in the
# backgrounded child raced with a caller that looked right away). Sets DETACHED_PID to the daemon's pid (setsid and
# nohup exec, so it is the command's pid).
detach() {  # detach LOGFILE COMMAND...
  local log="$1"; shift
  DETACHED_PID=$(
    for fd in /proc/"$BASHPID"/fd/*; do
      fd="${fd##*/}"; [ "$fd" -gt 2 ] && eval "exec $fd>&-"
    done
    setsid nohup "$@" >"$log" 2>&1 </dev/null &
    echo $!
  )
}

SERVICE_PID="$SOCKET_DIR/service.pid"

# Ask the API service over its socket (curl; the caller's timeout, a status line in $SOCKET_DIR/probe.out).
api() { local t="$1"; shift; curl -sS --max-time "$t" --unix-socket "$SOCKET" "$@"; }

# Whether the API service does its job: /_ping and /version answer, and a container of the base image (`true`, no
# network) is created, started and removed through the API, as compose does. Where the base image is not built yet
# there is nothing to start: the two calls decide. About half a second on an idle machine; a start that takes
# more than 60 s (a loaded machine takes a few) counts as failed.
starts_containers() {
  answers "$SOCKET" && api 5 -f -o /dev/null http://d/version 2>/dev/null || return 1
  podman image exists "$BASE_IMAGE" 2>/dev/null || return 0
  local name="llmops-probe-$$-$RANDOM" out="$SOCKET_DIR/probe.out" code
  # A probe whose removal timed out (a loaded machine) is left exited: removed here, by the next probe.
  podman ps -aq --filter name='^llmops-probe-' --filter status=exited 2>/dev/null | xargs -r podman rm -f >/dev/null 2>&1 \
    || true
  # What the failing call answered goes to probe.out (the log line quotes it).
  code="$(api 30 -o "$out" -w '%{http_code}' -X POST -H 'content-type: application/json' \
    -d "{\"Image\":\"$BASE_IMAGE\",\"Cmd\":[\"true\"],\"HostConfig\":{\"NetworkMode\":\"none\"}}" \
    "http://d/containers/create?name=$name" 2>&1)" || code="000 $code"
  [ "$code" = 201 ] || { echo "create: $code $(cat "$out" 2>/dev/null)" >"$out"; return 1; }
  code="$(api 60 -o "$out" -w '%{http_code}' -X POST "http://d/containers/$name/start" 2>&1)" || code="000 $code"
  [ "$code" != 204 ] || api 30 -o /dev/null -X POST "http://d/containers/$name/wait" 2>/dev/null || true
  api 30 -o /dev/null -X DELETE "http://d/containers/$name?force=true" 2>/dev/null || true
  [ "$code" = 204 ] || { echo "start: $code $(cat "$out" 2>/dev/null)" >"$out"; return 1; }
}

# End the API service this script started (its pid file; only if that pid is still a podman API service).
stop_service() {
  local pid
  pid="$(cat "$SERVICE_PID" 2>/dev/null || true)"
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "podman system service"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$SERVICE_PID" "$SOCKET"
}

start_service() {
  mkdir -p "$SOCKET_DIR"
  rm -f "$SOCKET"
  log "starting the Docker API socket (podman system service) at $SOCKET"
  detach "$SOCKET_DIR/service.log" podman system service --time=0 "unix://$SOCKET"
  echo "$DETACHED_PID" >"$SERVICE_PID"
  for _ in $(seq 100); do answers "$SOCKET" && break; sleep 0.2; done
  answers "$SOCKET" || { log "podman system service did not answer; see $SOCKET_DIR/service.log"; exit 1; }
}

# `stop`: end the ticker and the API service this script started (images and podman stay installed).
if [ "${1:-}" = stop ]; then
  [ -f "$TICKER_PID" ] && kill "$(cat "$TICKER_PID")" 2>/dev/null || true
  stop_service
  rm -f "$TICKER_PID"; exit 0
fi
# `probe`: only the check (nothing installed, started or restarted).
if [ "${1:-}" = probe ]; then
  mkdir -p "$SOCKET_DIR"
  starts_containers
  exit
fi

# A Docker engine (or socket) the caller already set up wins: nothing to install.
if [[ "${DOCKER_HOST:-}" == unix://* ]] && answers "${DOCKER_HOST#unix://}"; then
  echo "DOCKER_HOST=$DOCKER_HOST"; exit 0
fi

[ "$(uname -s)" = Linux ] || skip "not Linux (podman via this script needs a root Debian machine)"
[ "$(id -u)" = 0 ] || skip "not root (installing and running podman rootful needs root; set DOCKER_HOST to an engine)"
[ -f /etc/debian_version ] && command -v apt-get >/dev/null || skip "not Debian (no apt-get to install podman)"

missing=()
for pkg_cmd in podman:podman runc:runc debootstrap:debootstrap curl:curl; do
  command -v "${pkg_cmd#*:}" >/dev/null || missing+=("${pkg_cmd%%:*}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]} (apt-get)"
  # Another apt-get (a peer installing its own tools) may hold dpkg's lock: wait for it rather than fail.
  { apt-get -o DPkg::Lock::Timeout=600 update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}"; } \
      >/dev/null 2>&1 \
    || skip "apt-get could not install ${missing[*]}"
fi

# A drop-in beside the packaged containers.conf: only our two settings, written once.
if [ ! -f "$CONF" ]; then
  mkdir -p "$(dirname "$CONF")"
  cat >"$CONF" <<'EOF'
# Written by scripts/container_runtime.sh (llmops): crun cannot setrlimit here and cgroups are hybrid.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
EOF
fi

# A service that answers may still be wedged: restart it (only ours: the pid file says which), then start one.
probed=0
if answers "$SOCKET"; then
  if starts_containers; then
    probed=1
  else
    log "the API service at $SOCKET answers but cannot start a container ($(head -c 300 "$SOCKET_DIR/probe.out" \
      2>/dev/null)); restarting it"
    [ -f "$SERVICE_PID" ] || { log "it was not started by this script (no $SERVICE_PID): stop it first"; exit 1; }
    stop_service
  fi
fi
answers "$SOCKET" || start_service

# Healthchecks: podman schedules them with systemd timers, and there is no systemd here (PID 1 is not an init),
# so they would never run and `compose up --wait` would wait for "healthy" forever. A ticker runs them instead,
# every 5 s, for every running container that has one (the others answer an error, ignored), all at once: one
# after the other, ten containers whose probes each took 12 s under load were checked once every two minutes.
if [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ] && ! { [ -f "$TICKER_PID" ] && kill -0 "$(cat "$TICKER_PID")" 2>/dev/null; }; then
  log "starting the healthcheck ticker (no systemd to run podman's healthcheck timers)"
  detach /dev/null bash -c 'while sleep 5; do for c in $(podman ps -q); do podman healthcheck run "$c" >/dev/null 2>&1 & done; wait; done'
  echo "$DETACHED_PID" >"$TICKER_PID"
fi

# Base image: bookworm minbase + python3.11 (venv, pip for `pip wheel` in the builder stage, `python` on PATH).
if ! podman image exists "$BASE_IMAGE"; then
  rootfs="$(mktemp -d /var/tmp/llmops-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' EXIT
  log "building $BASE_IMAGE with debootstrap from $MIRROR (once; a few minutes)"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,curl \
    bookworm "$rootfs" "$MIRROR" >"$SOCKET_DIR/debootstrap.log" 2>&1 \
    || skip "debootstrap could not build the base image from $MIRROR (no mirror in reach?); see $SOCKET_DIR/debootstrap.log"
  # The point-release and security suites too, as Debian's own images have them: apt in a build gets fixes.
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    "$MIRROR" "$MIRROR" >"$rootfs/etc/apt/sources.list"
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" -c . | podman import --quiet \
    --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"; trap - EXIT
fi

# Redis in place of the public redis image: Debian's redis-server on the same base, /data as its workdir.
if ! podman image exists "$REDIS_IMAGE"; then
  log "building $REDIS_IMAGE (apt-get inside the build; the Debian mirror is reachable from containers)"
  podman build --quiet -t "$REDIS_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f "$(dirname "$0")/../deploy/images/redis/Dockerfile" "$(dirname "$0")/../deploy/images/redis" >/dev/null
fi

# A service started (or found) above has not yet shown that it starts containers: once, now the base image exists.
if [ "$probed" = 0 ] && ! starts_containers; then
  log "the API service at $SOCKET cannot start a container ($(head -c 300 "$SOCKET_DIR/probe.out" 2>/dev/null));"
  log "see $SOCKET_DIR/service.log"
  exit 1
fi

# What builds and compose use: the socket, and the local images standing in for the public ones.
echo "LLMOPS_PYTHON_IMAGE=$BASE_IMAGE"
echo "LLMOPS_REDIS_IMAGE=$REDIS_IMAGE"
echo "DOCKER_HOST=unix://$SOCKET"
