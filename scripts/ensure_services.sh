#!/usr/bin/env bash
# Make sure the real servers the tests and benchmarks need are running: Redis on 127.0.0.1:6379 and
# PostgreSQL on 127.0.0.1:5432 (the feedback store's second backend). Starts (or installs, as root) what is missing.
set -euo pipefail
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
apt_install() {
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing $* (apt-get)"; apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    return 1
  fi
}

if ! listening 6379; then
  command -v redis-server >/dev/null || apt_install redis-server || { echo "error: no Redis and cannot install redis-server" >&2; exit 1; }
  echo "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do listening 6379 && break; sleep 0.1; done
  listening 6379 || { echo "error: redis-server did not start" >&2; exit 1; }
fi

if ! listening 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 50); do listening 5432 && break; sleep 0.2; done
  listening 5432 || echo "warning: PostgreSQL is not running; the feedback store's PostgreSQL tests will say so" >&2
fi

# promtool checks the Prometheus rules (optional: those tests skip with a reason when it is absent).
command -v promtool >/dev/null || apt_install --no-install-recommends prometheus || true
exit 0
