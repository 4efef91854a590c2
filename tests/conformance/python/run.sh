#!/usr/bin/env bash
# The Python referee: the official Python SDK (`phala-cloud`) and `dstack-sdk`, pinned in
# requirements.txt, against teeform's simulator and wire primitives. Called by scripts/test-all.
#
# phala-cloud depends on pysha3, which builds only on CPython <= 3.10. This finds a 3.10
# interpreter ($TEEFORM_PYTHON310, `python3.10` on PATH, or pyenv's), makes a virtualenv
# beside this script (.venv, remade when requirements.txt changes) and runs pytest. When no
# interpreter or package can be had, it fails in CI (CI set) and skips with a loud message
# elsewhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

in_ci() { [ -n "${CI:-}" ] && [ "${CI:-}" != "0" ] && [ "${CI:-}" != "false" ]; }

cannot() {
  if in_ci; then
    echo "python conformance: FAILED to set up: $1" >&2
    exit 1
  fi
  {
    echo
    echo "=================================================================="
    echo "  python conformance suite SKIPPED: $1"
    echo "  (the official Python SDK checks did not run; in CI this fails)"
    echo "=================================================================="
    echo
  } >&2
  exit 0
}

is_py310() { [ -x "$1" ] && [ "$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "3.10" ]; }

python=""
for candidate in "${TEEFORM_PYTHON310:-}" "$(command -v python3.10 2>/dev/null || true)" \
  "$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"/versions/3.10*/bin/python \
  /root/.pyenv/versions/3.10*/bin/python; do
  # pyenv's shim answers for a version it does not have with an error: is_py310 asks it.
  if [ -n "$candidate" ] && is_py310 "$candidate"; then
    python="$candidate"
    break
  fi
done
[ -n "$python" ] || cannot "no CPython 3.10 found (set TEEFORM_PYTHON310, or install one with pyenv: phala-cloud's pysha3 does not build on 3.11+)"

venv="$here/.venv"
stamp="$venv/.teeform-requirements-sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "python conformance: installing the pinned packages into $venv (with $python)..." >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" || cannot "cannot make a virtualenv with $python"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2; then
    rm -rf "$venv"
    cannot "pip install -r requirements.txt failed (is PyPI reachable? pysha3 needs a C compiler and Python headers)"
  fi
  echo "$want" >"$stamp"
fi

# The binary `cargo test` built, as the Node suite uses it (see ../run.sh).
if [ -z "${TEEFORM_BIN:-}" ]; then
  TEEFORM_BIN="$root/target/debug/teeform"
  if [ ! -x "$TEEFORM_BIN" ] || [ -n "$(cd "$root" && find src Cargo.toml Cargo.lock -newer "$TEEFORM_BIN" -print -quit)" ]; then
    echo "python conformance: building $TEEFORM_BIN..." >&2
    (cd "$root" && cargo build --quiet --bin teeform)
  fi
fi
export TEEFORM_BIN

cd "$here"
# The tests must not pick up a developer's real account.
unset PHALA_CLOUD_API_KEY PHALA_CLOUD_API_PREFIX
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@"
