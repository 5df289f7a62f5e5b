#!/usr/bin/env bash
# dev.sh — install what is missing (Debian 12 packages), build, and run Confab.
#   ./dev.sh demo    build, then run the Superset-like scene on a local 3-member ensemble
#                    (samples/superset_scene.sh; data in ./default.confab), and stop it
#   ./dev.sh test    build (plus an ASan+UBSan build of the unit tests) and run every test via ctest
#   ./dev.sh build   just install and build
# Builds use ninja and ccache; build trees are build/ and build-asan/.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake ninja-build g++ ccache pkg-config libgrpc++-dev protobuf-compiler-grpc
  libprotobuf-dev protobuf-compiler libabsl-dev nlohmann-json3-dev libspdlog-dev libxxhash-dev
  zlib1g-dev libjemalloc-dev libgtest-dev libgmock-dev libbenchmark-dev clang-format
  python3-grpcio python3-protobuf python3-pytest)

install_missing() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # The Node binding's tests need node >= 18 and npm; Debian's will do where none is on PATH.
  command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
  if ((${#missing[@]})); then
    echo "dev.sh: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
  fi
}

build() {  # build DIR TARGET [cmake args...]
  local dir=$1 target=$2; shift 2
  export CCACHE_BASEDIR="$PWD"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  ninja -C "$dir" "$target"
}

demo() {
  build build all
  # The main job: the Superset-like scene on a local 3-member ensemble (data in ./default.confab).
  samples/superset_scene.sh
}

run_tests() {
  build build all
  # A test that fails is run once more (ctest prints both runs); one that fails twice fails the
  # run. This absorbs a rare stall of the process-heavy suites on a loaded 2-core machine, seen
  # once in the Python binding's suite and still unexplained.
  ctest --test-dir build --output-on-failure --timeout 600 -j2 --repeat until-pass:2
  # Unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
  build build-asan unit_tests -DCONFAB_SANITIZE=address,undefined \
    -DCONFAB_BINDING_PYTHON=OFF -DCONFAB_BINDING_NODE=OFF
  ctest --test-dir build-asan --output-on-failure -L unit -j2
}

install_missing
case "${1:-}" in
  demo) demo ;;
  test) run_tests ;;
  build) build build all ;;
  *) echo "usage: ./dev.sh demo|test|build" >&2; exit 2 ;;
esac
