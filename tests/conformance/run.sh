#!/usr/bin/env bash
# The conformance suite: the official Phala SDKs and CLI (pinned in package-lock.json) against
# teeform's simulator and wire code. Called by scripts/test-all.
#
# Needs Node.js >= 18 and npm. When they or the npm packages cannot be set up, this fails
# in CI (CI set) and skips with a loud message elsewhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

in_ci() { [ -n "${CI:-}" ] && [ "${CI:-}" != "0" ] && [ "${CI:-}" != "false" ]; }

cannot() {
  if in_ci; then
    echo "conformance: FAILED to set up: $1" >&2
    exit 1
  fi
  {
    echo
    echo "=================================================================="
    echo "  conformance suite SKIPPED: $1"
    echo "  (the official Phala SDK/CLI checks did not run; in CI this fails)"
    echo "=================================================================="
    echo
  } >&2
  exit 0
}

command -v node >/dev/null 2>&1 || cannot "node is not installed (need Node.js >= 18 and npm)"
command -v npm >/dev/null 2>&1 || cannot "npm is not installed"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 18 ] || cannot "Node.js $(node --version) is too old (need >= 18)"

# Reinstall only when the lock file changed since the last install.
stamp="$here/node_modules/.teeform-lock-sha256"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "conformance: installing the pinned npm packages (npm ci)..." >&2
  if ! (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2); then
    cannot "npm ci failed (is the npm registry reachable?)"
  fi
  echo "$want" >"$stamp"
fi

# The debug binary `cargo test` just built (scripts/test-all runs it first). Built here only
# when missing or older than the sources, e.g. when this script runs on its own: a plain
# `cargo build` would otherwise recompile, as dev-dependencies change feature unification.
# TEEFORM_BIN overrides which binary is tested.
if [ -z "${TEEFORM_BIN:-}" ]; then
  TEEFORM_BIN="$root/target/debug/teeform"
  if [ ! -x "$TEEFORM_BIN" ] || [ -n "$(cd "$root" && find src Cargo.toml Cargo.lock -newer "$TEEFORM_BIN" -print -quit)" ]; then
    echo "conformance: building $TEEFORM_BIN..." >&2
    (cd "$root" && cargo build --quiet --bin teeform)
  fi
fi
export TEEFORM_BIN

cd "$here"
exec node --test --test-reporter=spec ./*.test.mjs
