#!/bin/sh
# build_stubs.sh OUT — generates the Python protobuf/gRPC stubs of the public API into OUT:
#   OUT/confab/v1/coordination_pb2.py, OUT/confab/v1/coordination_pb2_grpc.py
# OUT/confab has no __init__.py on purpose: put OUT on PYTHONPATH next to bindings/python and the
# `confab` package (bindings/python/confab, which extends its __path__ with pkgutil.extend_path)
# finds its `confab.v1` subpackage there. Generated code is never committed.
# Needs protoc (protobuf-compiler) and grpc_python_plugin (protobuf-compiler-grpc).
set -eu
if [ $# -ne 1 ]; then
  echo "usage: $0 OUTPUT_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
proto_dir=$(cd "$here/../../proto" && pwd)
out=$1
plugin=${GRPC_PYTHON_PLUGIN:-/usr/bin/grpc_python_plugin}
if [ ! -x "$plugin" ]; then
  echo "$0: $plugin not found: apt-get install protobuf-compiler-grpc" >&2
  exit 1
fi
mkdir -p "$out"
# Generate into a scratch directory, then move into place: a concurrent reader never sees a
# half-written module.
tmp=$(mktemp -d "$out/.stubs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
protoc -I "$proto_dir" --python_out="$tmp" --grpc_out="$tmp" \
  --plugin=protoc-gen-grpc="$plugin" "$proto_dir/confab/v1/coordination.proto"
: >"$tmp/confab/v1/__init__.py"
mkdir -p "$out/confab/v1"
for f in __init__.py coordination_pb2.py coordination_pb2_grpc.py; do
  mv -f "$tmp/confab/v1/$f" "$out/confab/v1/$f"
done
