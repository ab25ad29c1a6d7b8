#!/usr/bin/env bash
# The README's two commands (and CI's, through .ci/run):
#   bash tools/dev.sh demo   install what is missing, build, run tether on
#                            conf/tether.yaml in front of three demo backends
#   bash tools/dev.sh test   install what is missing, build, run the test suite
# Options after the command: --asan / --tsan build with sanitizers into
# build-asan / build-tsan and test that build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cmd=${1:-}
shift || true
build=build
cmake_flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
for opt in "$@"; do
  case $opt in
    --asan) build=build-asan; cmake_flags+=(-DTETHER_ASAN=ON -DTETHER_BENCH=OFF) ;;
    --tsan) build=build-tsan; cmake_flags+=(-DTETHER_TSAN=ON -DTETHER_BENCH=OFF) ;;
    *) echo "unknown option $opt" >&2; exit 2 ;;
  esac
done
[[ ${CI:-} == true ]] && cmake_flags+=(-DTETHER_WERROR=ON)

install_packages() {
  local missing=()
  while read -r pkg; do
    [[ -z $pkg || $pkg == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done < tools/packages.txt
  if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}"
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# Builds the targets named (all of them when none is).
build_tether() {
  export CCACHE_NOHASHDIR=1
  local targets=()
  (($#)) && targets=(--target "$@")
  cmake -S . -B "$build" "${cmake_flags[@]}" >/dev/null
  cmake --build "$build" -j2 "${targets[@]}"
}

run_demo() {
  local pids=()
  cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
  trap cleanup EXIT INT TERM
  for i in 1 2 3; do
    "$build/tools/tether-demo-backend" --name "s$i" --listen "127.0.0.1:300$i" >/dev/null &
    pids+=($!)
  done
  "$build/tether" -c conf/tether.yaml &
  pids+=($!)
  # Until tether answers on :8080 (at most 10 s); it exits at once if a port is taken.
  for _ in $(seq 100); do
    kill -0 "${pids[3]}" 2>/dev/null || { echo "tether exited (see above)" >&2; exit 1; }
    curl -s -o /dev/null -m 1 http://127.0.0.1:8080/ && break
    sleep 0.1
  done
  cat <<TXT

tether is listening on :8080 in front of three demo backends (s1, s2, s3).
Try, in another terminal:
  for i in 1 2 3 4 5 6; do curl -s http://127.0.0.1:8080/; done   # spread over s1..s3
  curl -s http://127.0.0.1:8080/headers                            # what a backend receives
  python3 tools/ws_check.py ws://127.0.0.1:8080/chat               # WebSocket through tether
Ctrl-C stops everything.
TXT
  wait "${pids[3]}"
}

# ctest on a sanitizer build ($1: asan or tsan). Every instrumented process
# (unit tests, tether, the demo backend, in integration and interop tests)
# writes its reports to $build/$1-reports/$1.PID (log_path); the harness fails
# the test whose tether or backend has one, and any report at all fails the run.
run_sanitized() {
  local san=$1 reports=$root/$build/$1-reports rc=0
  rm -rf "$reports" && mkdir -p "$reports"
  case $san in
    # A TSan report does not stop the process. tools/tsan.supp: the few
    # third-party false positives, each explained.
    tsan) export TSAN_OPTIONS="log_path=$reports/tsan suppressions=$root/tools/tsan.supp ${TSAN_OPTIONS:-}" ;;
    # ASan's and LSan's (leaks at exit) go there; UBSan writes to the process's
    # stderr whatever log_path says (the harness looks there too) and stops it
    # (-fno-sanitize-recover).
    asan) export ASAN_OPTIONS="log_path=$reports/asan ${ASAN_OPTIONS:-}"
          export UBSAN_OPTIONS="print_stacktrace=1 ${UBSAN_OPTIONS:-}" ;;
  esac
  ctest --output-on-failure --timeout 900 -LE 'slow|bench' || rc=$?
  if compgen -G "$reports/$san.*" >/dev/null; then
    for f in "$reports/$san".*; do echo "== $f"; head -c 20000 "$f"; done
    echo "$san: reports from $(ls "$reports" | wc -l) process(es): see $reports" >&2
    rc=1
  fi
  return $rc
}

case $cmd in
  # The demo needs no test or benchmark binary: about half the build of a fresh clone.
  demo) install_packages; build_tether tether tether-demo-backend tether-from-nginx; run_demo ;;
  test)
    install_packages
    build_tether
    cd "$build"
    case $build in
      build-asan) run_sanitized asan ;;
      build-tsan) run_sanitized tsan ;;
      *) ctest --output-on-failure --timeout 900 -LE 'slow|bench' ;;
    esac ;;
  *) echo "usage: bash tools/dev.sh demo|test [--asan|--tsan]" >&2; exit 2 ;;
esac
