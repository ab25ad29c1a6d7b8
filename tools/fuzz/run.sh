#!/usr/bin/env bash
# Builds tether's libFuzzer targets with clang (ASan+UBSan, coverage) into
# build-fuzz/ and runs each for SECONDS (default 60), one after the other,
# starting from the committed seeds in tools/fuzz/corpus/TARGET (new inputs go
# to build-fuzz/corpus/TARGET, findings to build-fuzz/findings/).
#   bash tools/fuzz/run.sh [SECONDS] [TARGET...]
# Not part of `tools/dev.sh test`. Installs clang and libclang-rt-14-dev (the
# libFuzzer runtime) from Debian's packages when missing. Exit 1 on a finding.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(request_head response_head chunked engineio_open cookie_token config_loader proxy_protocol)

missing=()
for pkg in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build=build-fuzz
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTETHER_FUZZ=ON \
  -DTETHER_TESTS=OFF -DTETHER_BENCH=OFF >/dev/null
lock=()
[[ -e /tmp/tether-build.lock ]] && lock=(flock /tmp/tether-build.lock)  # a shared machine
"${lock[@]}" cmake --build "$build" -j2 --target "${targets[@]/#/fuzz_}"

mkdir -p "$build/findings"
status=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  mkdir -p "$corpus"
  log="$build/fuzz_$t.log"
  echo "== fuzz_$t for ${seconds}s (log: $log)"
  if ! "$build/tools/fuzz/fuzz_$t" "$corpus" "tools/fuzz/corpus/$t" -max_total_time="$seconds" \
      -print_final_stats=1 -timeout=30 -artifact_prefix="$build/findings/$t-" -max_len=8192 >"$log" 2>&1; then
    echo "   FINDING: see $log and $build/findings/"
    status=1
  fi
  # The last status line (execs, cov, corpus) and the final execs/s.
  grep -E '^#[0-9]+' "$log" | tail -1 || true
  grep -E 'stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
done
exit $status
