#!/usr/bin/env bash
# Rebuilds build/*.abi and build/*.bin from TestDstack.sol with solc-js 0.8.37 from npm
# (forge would try to download a compiler, which fails offline). Commit the results.
set -euo pipefail
cd "$(dirname "$0")"
cache="${TEEFORM_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/teeform-test/npm}"
mkdir -p "$cache"
[ -x "$cache/node_modules/.bin/solcjs" ] || npm install --no-audit --no-fund --prefix "$cache" solc@0.8.37 >&2
rm -rf build && mkdir build
"$cache/node_modules/.bin/solcjs" --bin --abi --optimize -o build TestDstack.sol
# solcjs names outputs after the source file; keep just the contract names.
for f in build/*; do
  mv "$f" "build/${f##*TestDstack_sol_}"
done
ls build
