#!/bin/sh
# The Node binding's tests as ctest runs them (node_binding_test): install the npm dependencies
# when node_modules is missing or older than the lock file, then run node's test runner.
# CONFABD names the server binary (default: ../../build/server/confabd).
set -eu
cd "$(dirname "$0")"
stamp=node_modules/.package-lock.json  # written by npm at every install
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  npm ci --no-audit --no-fund
fi
exec node --test
