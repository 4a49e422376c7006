#!/usr/bin/env bash
# Compile the requirement sets (requirements/*.in) into their locks with uv, or check the committed locks.
#   lock.sh write   regenerate lock.txt (everything `make install` installs) and one lock per set
#   lock.sh check   compile into a scratch folder and fail when any committed lock differs
# Each set's lock is compiled against lock.txt as constraints, so a service image and the dev venv get the
# same version of every package they share. Existing pins are kept unless an .in file asks otherwise (uv
# prefers the versions already in the output file): regenerating changes only what the edit requires.
# Resolution uses PyPI only (--no-config: no uv.toml; uv never reads pip's configuration or local wheel folders).
set -euo pipefail

mode=${1:-write}
here=$(cd "$(dirname "$0")" && pwd)
UV=${UV:-$here/../.venv/bin/uv}
SETS="gateway inference rag registry feedback guardrails training finetune"
LOCKS="lock.txt $(for s in $SETS; do printf '%s.txt ' "$s"; done)"

[ -x "$UV" ] || command -v "$UV" >/dev/null || { echo "uv not found at $UV (make install puts it in the venv; or UV=/path/to/uv)"; exit 2; }
# The compile steps run in another folder: make a relative path (make passes .venv/bin/uv) absolute first.
case "$UV" in /*) ;; */*) UV="$PWD/$UV" ;; esac

compile() {
  # --universal: one lock for Linux, macOS and Windows (platform markers kept); 3.11 is the oldest Python supported.
  "$UV" pip compile --quiet --no-config --universal --python-version 3.11 \
    --custom-compile-command "make lock" "$@"
}

case "$mode" in
  write) work=$here ;;
  check)
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # Same file names in the same relative layout: the locks' "# via" comments come out identical.
    cp "$here"/*.in "$work"/
    for f in $LOCKS; do [ ! -f "$here/$f" ] || cp "$here/$f" "$work/$f"; done
    ;;
  *) echo "usage: $0 write|check"; exit 2 ;;
esac

cd "$work"
compile lock.in -o lock.txt
for s in $SETS; do
  compile "$s.in" -c lock.txt -o "$s.txt"
done

if [ "$mode" = check ]; then
  status=0
  for f in $LOCKS; do
    if ! diff -u "$here/$f" "$work/$f" >/dev/null 2>&1; then
      echo "requirements/$f does not match its .in files:"
      diff -u "$here/$f" "$work/$f" | head -40 || true
      status=1
    fi
  done
  [ "$status" = 0 ] && echo "locks match their .in files: $LOCKS" || echo "run 'make lock' and commit the result"
  exit "$status"
fi
echo "wrote requirements/{$(echo "$LOCKS" | sed 's/ *$//; s/ /,/g')}"
