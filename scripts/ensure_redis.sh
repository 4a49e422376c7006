#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379 (tests and benchmarks need a real one); start it if not.
set -euo pipefail
if (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then exit 0; fi
if ! command -v redis-server >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing redis-server (apt-get)"; apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  else
    echo "error: Redis is not running on 127.0.0.1:6379 and redis-server is not installed" >&2; exit 1
  fi
fi
echo "starting redis-server on 127.0.0.1:6379"
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && exit 0; sleep 0.1; done
echo "error: redis-server did not start" >&2; exit 1
