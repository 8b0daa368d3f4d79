#!/usr/bin/env bash
# The whole test run, as CI runs it: install deps, build, ctest, the server's end-to-end tests
# through HTTP, a short fuzz run of every fuzz target, and the oracle check on the peers' smoke
# data set (when ../shared/peers exists).
# Prints one line per step and ends with "N passed, M failed"; exits non-zero if anything failed.
#
# Settings (environment):
#   SHOAL_BUILD_DIR       build directory (default: build)
#   SHOAL_FUZZ_BUILD_DIR  clang build directory for the fuzz targets (default: build-fuzz)
#   SHOAL_SLOW=1          also run the tests labelled `slow`
#   SHOAL_FUZZ_SECONDS    seconds per fuzz target (default 30; 0 skips fuzzing)
#   SHOAL_JOBS            parallel compile jobs (default: ninja's choice)
#   SHOAL_CTEST_JOBS      parallel tests (default 2)
#   SHOAL_SKIP_ORACLE=1   skip the peers oracle check
#   SHOAL_SKIP_SERVER=1   skip the HTTP end-to-end tests (tests/server)
set -uo pipefail  # no -e: a failing step is counted, and the run goes on

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${SHOAL_BUILD_DIR:-$ROOT/build}
FUZZ_BUILD=${SHOAL_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
FUZZ_SECONDS=${SHOAL_FUZZ_SECONDS:-30}
CTEST_JOBS=${SHOAL_CTEST_JOBS:-2}
PEERS=$ROOT/../shared/peers
LOGS=$BUILD/test-logs

passed=0
failed=0
summary=()  # one line per step, printed at the end
TMP_DIRS=()
cleanup() { for d in "${TMP_DIRS[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT

now() { date +%s; }
note() { summary+=("$(printf '%-6s %-34s %s' "$1" "$2" "${3:-}")"); }
pass() { passed=$((passed + ${3:-1})); note PASS "$1" "$2"; echo "--> PASS $1 $2"; }
fail() { failed=$((failed + ${3:-1})); note FAIL "$1" "$2"; echo "--> FAIL $1 $2"; }
skip() { note SKIP "$1" "$2"; echo "--> SKIP $1 $2"; }
header() { echo; echo "==> $*"; }

# run_step NAME CMD...: runs CMD with its output shown, counts one pass or one failure.
run_step() {
  local name=$1; shift
  header "$name: $*"
  local t0; t0=$(now)
  if "$@"; then pass "$name" "($(($(now) - t0)) s)"; return 0; fi
  fail "$name" "(exit $?, $(($(now) - t0)) s)"
  return 1
}

mkdir -p "$LOGS"
T_START=$(now)

# --- 1. dependencies --------------------------------------------------------------------------
run_step install-deps "$ROOT/scripts/install-deps.sh"

# --- 2. build ---------------------------------------------------------------------------------
# Keeps going past a failing target (ninja -k 0) so that one broken stage does not hide the
# results of the others: a test binary that did not build shows up in ctest as <name>_NOT_BUILT.
header "build: scripts/build.sh $BUILD"
t0=$(now)
SHOAL_KEEP_GOING=1 "$ROOT/scripts/build.sh" "$BUILD" 2>&1 | tee "$LOGS/build.log"
if [ "${PIPESTATUS[0]}" = 0 ]; then
  pass build "($(($(now) - t0)) s)"
else
  fail build "($(($(now) - t0)) s; the other targets were built; log: $LOGS/build.log)"
  grep -E '^FAILED:' "$LOGS/build.log" | sed 's/^/    /' | head -n 20
fi

# --- 3. ctest ---------------------------------------------------------------------------------
if [ -f "$BUILD/CTestTestfile.cmake" ]; then
  label_args=(-LE '^slow$')
  [ "${SHOAL_SLOW:-0}" = 1 ] && label_args=()
  header "ctest --output-on-failure -j$CTEST_JOBS ${label_args[*]}"
  t0=$(now)
  ctest --test-dir "$BUILD" --output-on-failure -j"$CTEST_JOBS" "${label_args[@]}" 2>&1 |
    tee "$LOGS/ctest.log"
  rc=${PIPESTATUS[0]}
  dt=$(($(now) - t0))
  # "100% tests passed, 0 tests failed out of 12" / "83% tests passed, 2 tests failed out of 12"
  line=$(grep -E '[0-9]+ tests? failed out of [0-9]+' "$LOGS/ctest.log" | tail -n 1)
  if [ -n "$line" ]; then
    n_fail=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    n_all=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
    passed=$((passed + n_all - n_fail))
    failed=$((failed + n_fail))
    if [ "$n_fail" != 0 ]; then
      note FAIL ctest "$n_fail of $n_all tests failed ($dt s)"
    elif [ "$rc" != 0 ]; then
      fail ctest "(exit $rc although no test failed; $dt s)"
    else
      note PASS ctest "$n_all/$n_all tests ($dt s)"
    fi
  elif grep -q 'No tests were found' "$LOGS/ctest.log"; then
    note NOTE ctest "no tests registered yet"
  else
    fail ctest "(exit $rc, no ctest summary line; see $LOGS/ctest.log)"
  fi
else
  fail ctest "(not configured: $BUILD/CTestTestfile.cmake is missing)"
fi

# --- 4. the server end to end, through HTTP ----------------------------------------------------
# tests/server/run.sh starts `shoal serve` on free ports with temporary data directories and runs
# the Python suite (ingest, API, change stream, restarts, the SIGKILL crash test) and the real
# Segment and RudderStack SDKs (npm). Its last line is "N passed, M failed".
if [ "${SHOAL_SKIP_SERVER:-0}" = 1 ]; then
  skip server-e2e "(SHOAL_SKIP_SERVER=1)"
elif [ ! -x "$BUILD/shoal" ]; then
  fail server-e2e "($BUILD/shoal was not built)"
else
  header "server end to end: tests/server/run.sh"
  t0=$(now)
  SHOAL_BIN="$BUILD/shoal" "$ROOT/tests/server/run.sh" 2>&1 | tee "$LOGS/server-e2e.log"
  rc=${PIPESTATUS[0]}
  dt=$(($(now) - t0))
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOGS/server-e2e.log" | tail -n 1)
  if [ -n "$line" ]; then
    n_pass=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
    n_fail=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
    passed=$((passed + n_pass))
    failed=$((failed + n_fail))
    if [ "$n_fail" = 0 ] && [ "$rc" = 0 ]; then
      note PASS server-e2e "$n_pass/$n_pass tests ($dt s)"
    elif [ "$n_fail" = 0 ]; then
      fail server-e2e "(exit $rc although no test failed; $dt s)"
    else
      note FAIL server-e2e "$n_fail of $((n_pass + n_fail)) tests failed ($dt s)"
    fi
  else
    fail server-e2e "(exit $rc, no summary line; see $LOGS/server-e2e.log)"
  fi
fi

# --- 5. fuzz ----------------------------------------------------------------------------------
fuzz_targets=()
for f in "$ROOT"/fuzz/*_fuzz.cc; do
  [ -e "$f" ] && fuzz_targets+=("$(basename "$f" .cc)")
done
if [ "$FUZZ_SECONDS" = 0 ]; then
  skip fuzz "(SHOAL_FUZZ_SECONDS=0)"
elif [ ${#fuzz_targets[@]} -eq 0 ]; then
  skip fuzz "(no fuzz/*_fuzz.cc yet)"
else
  # Every object gets coverage instrumentation and ASan/UBSan (fuzzer-no-link), not only the
  # target's own file, so that libFuzzer sees the parser's and decoder's branches (CMakeLists.txt
  # may add the same flags under SHOAL_FUZZ; repeating them is harmless). UB aborts the run.
  fuzz_flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
  fuzz_flags+=" -fno-omit-frame-pointer"
  header "fuzz build (clang) in $FUZZ_BUILD: ${fuzz_targets[*]}"
  t0=$(now)
  fuzz_build_ok=0
  if cmake -S "$ROOT" -B "$FUZZ_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
       -DCMAKE_CXX_COMPILER=clang++ -DSHOAL_FUZZ=ON -DSHOAL_BENCH=OFF \
       -DCMAKE_CXX_FLAGS="$fuzz_flags" >"$LOGS/fuzz-build.log" 2>&1; then
    cmake --build "$FUZZ_BUILD" ${SHOAL_JOBS:+--parallel "$SHOAL_JOBS"} \
      --target "${fuzz_targets[@]}" -- -k 0 >>"$LOGS/fuzz-build.log" 2>&1 && fuzz_build_ok=1
  fi
  if [ $fuzz_build_ok = 1 ]; then
    pass fuzz-build "($(($(now) - t0)) s)"
  else
    grep -E '^(CMake Error|FAILED:)|error:' "$LOGS/fuzz-build.log" | head -n 30 | sed 's/^/    /'
    fail fuzz-build "($(($(now) - t0)) s; log: $LOGS/fuzz-build.log)"
  fi
  mkdir -p "$FUZZ_BUILD/artifacts"
  for t in "${fuzz_targets[@]}"; do
    bin=$FUZZ_BUILD/$t
    if [ ! -x "$bin" ]; then
      fail "fuzz $t" "(not built)"
      continue
    fi
    # The corpus is copied so that new inputs libFuzzer finds never land in the repository.
    corpus=$(mktemp -d "${TMPDIR:-/tmp}/shoal-$t.XXXXXX")
    TMP_DIRS+=("$corpus")
    seeds=$ROOT/fuzz/corpus/${t%_fuzz}
    [ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
    dict=()
    [ -f "$ROOT/fuzz/${t%_fuzz}.dict" ] && dict=(-dict="$ROOT/fuzz/${t%_fuzz}.dict")
    header "fuzz $t for ${FUZZ_SECONDS} s on $(find "$corpus" -type f | wc -l) seed inputs"
    t0=$(now)
    timeout $((FUZZ_SECONDS + 120)) "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$FUZZ_BUILD/artifacts/$t-" \
      "${dict[@]}" "$corpus" >"$LOGS/fuzz-$t.log" 2>&1
    rc=$?
    if [ $rc = 0 ]; then
      pass "fuzz $t" "($(grep -E '^stat::number_of_executed_units' "$LOGS/fuzz-$t.log" |
        awk '{print $2}') runs, $(($(now) - t0)) s)"
    else
      tail -n 40 "$LOGS/fuzz-$t.log"
      fail "fuzz $t" "(exit $rc; crash input in $FUZZ_BUILD/artifacts/, log $LOGS/fuzz-$t.log)"
    fi
  done
fi

# --- 6. oracle check on the peers' smoke data set ---------------------------------------------
if [ "${SHOAL_SKIP_ORACLE:-0}" = 1 ]; then
  skip oracle "(SHOAL_SKIP_ORACLE=1)"
elif [ ! -d "$PEERS" ]; then
  skip oracle "(no ../shared/peers next to the repository)"
else
  data=$BUILD/peers-smoke
  out=$BUILD/peers-smoke-out
  if [ -f "$data/events.ndjson" ]; then
    note NOTE peers-data "reused $data"
  else
    # Generated beside the final folder and renamed at the end, so that an interrupted run never
    # leaves a half-written events.ndjson that the next run would reuse.
    rm -rf "$data.partial"
    run_step peers-data python3 "$PEERS/gen.py" --users 20000 --events 2000000 \
      --out "$data.partial" && rm -rf "$data" && mv "$data.partial" "$data"
  fi
  if [ ! -f "$data/events.ndjson" ]; then
    fail oracle "(no smoke data set)"
  elif [ ! -x "$BUILD/shoal" ]; then
    fail oracle "($BUILD/shoal was not built)"
  else
    rm -rf "$out"
    if run_step peers-bench "$BUILD/shoal" bench peers "$data" --out "$out"; then
      header "check_oracle.sh $out expected/oracle_counts_smoke.txt"
      "$PEERS/check_oracle.sh" "$out" "$PEERS/expected/oracle_counts_smoke.txt" 2>&1 |
        tee "$LOGS/oracle.log"
      # Table rows: "s1 expected got exp_md5 got_md5 result...": every segment must be ok.
      seen=0
      while read -r seg _ _ _ _ result; do
        case $seg in s[1-8]) ;; *) continue ;; esac
        seen=$((seen + 1))
        if [ "$result" = ok ]; then
          pass "oracle $seg" ""
        else
          fail "oracle $seg" "($result)"
        fi
      done < <(grep -E '^s[1-8] ' "$LOGS/oracle.log")
      [ "$seen" = 8 ] || fail oracle "(expected 8 segment rows from check_oracle.sh, got $seen)"
    fi
  fi
fi

# --- summary ----------------------------------------------------------------------------------
echo
echo "==> summary ($(($(now) - T_START)) s)"
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
