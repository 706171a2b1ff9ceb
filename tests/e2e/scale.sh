#!/usr/bin/env bash
# The scale benchmark: N canaries initialized and idle on the loopback control plane, for this
# operator and for Flagger v1.44.0 one after the other in one run, printed side by side with
# Flagger/ours ratios (tests/e2e/README.md, "Scale benchmark").
#
#   tests/e2e/scale.sh [--canaries N] [--only ours|flagger] [--unrelated M] [--window SECONDS]
#                      [--revisions K] [--timeout SECONDS] [--debug]
#
# --debug measures target/debug/flagger instead of target/release/flagger. Builds what is
# missing, starts its own test cluster in target/scale-cluster (or reuses one running there, and
# then leaves it running), and stops what it started, by recorded PID. Operator logs:
# target/scale-logs/. Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
LOGS=${FLAGGER_SCALE_LOGS:-$REPO/target/scale-logs}
export FLAGGER_TEST_CLUSTER_DIR=${FLAGGER_SCALE_CLUSTER_DIR:-$REPO/target/scale-cluster}
CLUSTER=tests/cluster/cluster.sh
PROFILE=release
args=()
for a in "$@"; do
  if [ "$a" = --debug ]; then PROFILE=debug; else args+=("$a"); fi
done

log() { echo "[scale] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

rm -rf "$LOGS"
mkdir -p "$LOGS"
STARTED_CLUSTER=0
BENCH_PID=
cleanup() {
  local rc=$?
  set +e
  if [ -n "$BENCH_PID" ] && [ -d "/proc/$BENCH_PID" ]; then
    # The benchmark's operators die with it (PR_SET_PDEATHSIG).
    kill -TERM "$BENCH_PID" 2>/dev/null
    wait "$BENCH_PID" 2>/dev/null
    log "stopped the benchmark (pid $BENCH_PID)"
  fi
  if [ "$STARTED_CLUSTER" = 1 ]; then
    "$CLUSTER" down >>"$LOGS/cluster.log" 2>&1
    cp -r "$FLAGGER_TEST_CLUSTER_DIR/logs" "$LOGS/cluster-logs" 2>/dev/null
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tests/cluster/build.sh >"$LOGS/build-cluster.log" 2>&1 || { tail -n 30 "$LOGS/build-cluster.log"; die "building the control plane failed"; }
FLAGGER_E2E_FLAGGER_GO=${FLAGGER_E2E_FLAGGER_GO:-$(tests/tools/flagger/build.sh 2>"$LOGS/build-flagger-go.log")} ||
  { tail -n 30 "$LOGS/build-flagger-go.log"; die "building Flagger from its Go module failed"; }
export FLAGGER_E2E_FLAGGER_GO
cargo_profile=()
[ "$PROFILE" = release ] && cargo_profile=(--release)
# One build of both binaries, so they share one feature resolution.
cargo build --locked "${cargo_profile[@]}" -p flagger -p flagger-e2e --bin flagger --bin flagger-e2e-scale 2>&1 | tail -n 2
export FLAGGER_BIN=$REPO/target/$PROFILE/flagger

# shellcheck source=cluster-up.sh
source tests/e2e/cluster-up.sh
cluster_up_with_crds
log "cluster up; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); ours: $FLAGGER_BIN ($PROFILE)"

"$REPO/target/$PROFILE/flagger-e2e-scale" --logs "$LOGS" "${args[@]}" &
BENCH_PID=$!
set +e
wait "$BENCH_PID"
rc=$?
set -e
BENCH_PID=
exit "$rc"
