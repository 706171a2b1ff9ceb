#!/usr/bin/env bash
# The real-cluster suite: the flagger operator against a loopback kube-apiserver + etcd +
# kube-controller-manager (tests/cluster/), a real Prometheus and the suite's telemetry generator.
#
#   tests/e2e/run.sh                 build what is missing, start everything, run every scenario
#   tests/e2e/run.sh <filter>        only the scenarios whose name contains <filter>
#
# Needs: go (first run only, to build the control plane and Flagger), openssl, curl, prometheus (Debian
# package; .ci/run installs it). Logs: target/e2e-logs/ (one directory per scenario with the
# operator's log, its recorded traces and their replays). Everything listens on 127.0.0.1 and
# everything started here is stopped here, by recorded PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
LOGS=${FLAGGER_E2E_LOGS:-$REPO/target/e2e-logs}
export FLAGGER_TEST_CLUSTER_DIR=${FLAGGER_E2E_CLUSTER_DIR:-$REPO/target/e2e-cluster}
CLUSTER=tests/cluster/cluster.sh
PROMETHEUS_BIN=${FLAGGER_E2E_PROMETHEUS_BIN:-prometheus}
START=$SECONDS

log() { echo "[e2e] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

rm -rf "$LOGS"
mkdir -p "$LOGS"
command -v "$PROMETHEUS_BIN" >/dev/null || die "no prometheus binary (apt-get install prometheus)"

# --- processes started here, stopped by PID -------------------------------------------------
STARTED_CLUSTER=0
TESTS_PID=
TELEMETRY_PID=
PROMETHEUS_PID=

alive() { # pid exe: the PID still runs that executable (guards against PID reuse; a rebuilt
  # binary shows as "<path> (deleted)")
  local exe
  [ -n "$1" ] && [ -d "/proc/$1" ] || return 1
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$(readlink -f "$2")" ]
}
running() { # pid: exists and is not a zombie (it may not have exec'd its binary yet)
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]
}
stop_pid() { # name pid exe
  local name=$1 pid=$2 exe=$3 n=0
  alive "$pid" "$exe" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while alive "$pid" "$exe" && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  if alive "$pid" "$exe"; then kill -KILL "$pid" 2>/dev/null || true; fi
  log "stopped $name (pid $pid)"
}
cleanup() {
  local rc=$?
  set +e
  if [ -n "$TESTS_PID" ] && running "$TESTS_PID"; then
    kill -TERM -- "-$TESTS_PID" 2>/dev/null
    sleep 1
    kill -KILL -- "-$TESTS_PID" 2>/dev/null
    log "stopped the scenarios (process group $TESTS_PID)"
  fi
  stop_pid prometheus "$PROMETHEUS_PID" "$(command -v "$PROMETHEUS_BIN")"
  stop_pid telemetry "$TELEMETRY_PID" "$REPO/target/debug/flagger-e2e-telemetry"
  if [ "$STARTED_CLUSTER" = 1 ]; then
    "$CLUSTER" down >>"$LOGS/cluster.log" 2>&1
    cp -r "$FLAGGER_TEST_CLUSTER_DIR/logs" "$LOGS/cluster-logs" 2>/dev/null
  fi
  log "finished in $((SECONDS - START))s with exit code $rc; logs in $LOGS"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p tries=0
  while :; do
    p=$((20000 + RANDOM % 12000))
    port_taken "$p" || { echo "$p"; return; }
    tries=$((tries + 1)); [ $tries -lt 200 ] || die "no free port"
  done
}
wait_http() { # what url pid
  local n=0
  until curl -sf --max-time 2 --noproxy '*' "$2" >/dev/null 2>&1; do
    running "$3" || die "$1 exited; see $LOGS/$1.log: $(tail -n 20 "$LOGS/$1.log")"
    n=$((n + 1)); [ $n -lt 150 ] || die "$1 not ready on $2 after 30s"
    sleep 0.2
  done
}

# --- build ----------------------------------------------------------------------------------
t0=$SECONDS
tests/cluster/build.sh >"$LOGS/build-cluster.log" 2>&1 || { tail -n 30 "$LOGS/build-cluster.log"; die "building the control plane failed"; }
log "control-plane binaries ready ($((SECONDS - t0))s)"
t0=$SECONDS
# The real Flagger (cmd/flagger of the Go module pinned in tests/tools/flagger/go.mod), which the
# migration scenario runs first and then replaces with ours; built once, then cached.
FLAGGER_E2E_FLAGGER_GO=${FLAGGER_E2E_FLAGGER_GO:-$(tests/tools/flagger/build.sh 2>"$LOGS/build-flagger-go.log")} ||
  { tail -n 30 "$LOGS/build-flagger-go.log"; die "building Flagger from its Go module failed"; }
export FLAGGER_E2E_FLAGGER_GO
log "Flagger $(basename "$(dirname "$FLAGGER_E2E_FLAGGER_GO")") ready ($((SECONDS - t0))s)"
t0=$SECONDS
cargo build --locked --workspace --bins 2>&1 | tail -n 3
cargo test --locked --workspace --test scenarios --no-run 2>&1 | tail -n 2
log "operator, telemetry generator and scenarios built ($((SECONDS - t0))s)"

# --- start ----------------------------------------------------------------------------------
# shellcheck source=cluster-up.sh
source tests/e2e/cluster-up.sh
cluster_up_with_crds
log "cluster up with Flagger's CRDs ($((SECONDS - START))s since start)"

TELEMETRY_BIN=$REPO/target/debug/flagger-e2e-telemetry
rm -f "$LOGS/telemetry.port"
setsid "$TELEMETRY_BIN" --kubeconfig "$KUBECONFIG" --listen 127.0.0.1:0 --port-file "$LOGS/telemetry.port" \
  </dev/null >"$LOGS/telemetry.log" 2>&1 &
TELEMETRY_PID=$!
n=0
until [ -s "$LOGS/telemetry.port" ]; do
  running "$TELEMETRY_PID" || die "telemetry generator exited: $(tail -n 20 "$LOGS/telemetry.log")"
  n=$((n + 1)); [ $n -lt 150 ] || die "telemetry generator did not start"
  sleep 0.2
done
TELEMETRY_URL=http://127.0.0.1:$(tr -d '[:space:]' <"$LOGS/telemetry.port")
wait_http telemetry "$TELEMETRY_URL/metrics" "$TELEMETRY_PID"

PROM_PORT=$(free_port)
mkdir -p "$LOGS/prometheus/data"
cat >"$LOGS/prometheus/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: telemetry
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ['${TELEMETRY_URL#http://}']
EOF
setsid "$PROMETHEUS_BIN" --config.file="$LOGS/prometheus/prometheus.yml" \
  --storage.tsdb.path="$LOGS/prometheus/data" --storage.tsdb.retention.time=2h \
  --web.listen-address="127.0.0.1:$PROM_PORT" </dev/null >"$LOGS/prometheus.log" 2>&1 &
PROMETHEUS_PID=$!
wait_http prometheus "http://127.0.0.1:$PROM_PORT/-/ready" "$PROMETHEUS_PID"
log "telemetry on $TELEMETRY_URL, prometheus on http://127.0.0.1:$PROM_PORT ($((SECONDS - START))s since start)"

# --- run ------------------------------------------------------------------------------------
export FLAGGER_E2E_PROMETHEUS=http://127.0.0.1:$PROM_PORT
export FLAGGER_E2E_TELEMETRY=$TELEMETRY_URL
export FLAGGER_E2E_LOGS=$LOGS
export FLAGGER_E2E_PROMETHEUS_BIN=$PROMETHEUS_BIN
export FLAGGER_BIN=$REPO/target/debug/flagger
# The chart scenario renders charts/flagger with helm (built from its pinned Go module, cached)
# and applies it with the cluster's kubectl.
export FLAGGER_E2E_HELM=${FLAGGER_E2E_HELM:-$("$REPO/tests/tools/helm/build.sh")}
export FLAGGER_E2E_CLUSTER=$REPO/$CLUSTER
# In their own process group, in the background: a signal to this script runs the cleanup at
# once (bash defers traps while a foreground command runs), and the cleanup can stop the whole
# group; operators and private Prometheus servers die with the test process (PR_SET_PDEATHSIG).
set +e
setsid bash -c 'set -o pipefail; cargo test --locked --workspace --test scenarios -- --include-ignored --test-threads=1 "$@" 2>&1 | tee "$0"' \
  "$LOGS/scenarios.log" "$@" </dev/null &
TESTS_PID=$!
wait "$TESTS_PID"
rc=$?
TESTS_PID=
if [ "$rc" -eq 0 ] && [ "$#" -eq 0 ]; then
  # The executor's writes and the CRDs' admission rules, checked against the same API server.
  log "executor and CRD tests against the real API server"
  # Flagger's own CRDs, from the Go module the migration scenario's Flagger is built from: the
  # compatibility corpus must be valid for them too.
  flagger_dir=$(cd tests/tools/flagger && GOFLAGS=-mod=readonly go mod download -json github.com/fluxcd/flagger |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  export FLAGGER_GO_CRDS="$flagger_dir/artifacts/flagger/crd.yaml"
  cargo test --locked --workspace --test it -- --ignored executor_cluster:: crd_cluster:: 2>&1 \
    | tee -a "$LOGS/scenarios.log" | grep -E '^test |test result'
  rc=${PIPESTATUS[0]}
fi
set -e
if [ "$rc" -ne 0 ]; then
  log "scenarios failed; log tails follow"
  for t in $(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$LOGS/scenarios.log"); do
    dir="$LOGS/${t##*::}"
    [ -d "$dir" ] || continue
    for f in "$dir"/*.log; do
      [ -f "$f" ] || continue
      echo "----- $f (last 40 lines)"
      tail -n 40 "$f"
    done
  done
  echo "----- $LOGS/telemetry.log (last 20 lines)"; tail -n 20 "$LOGS/telemetry.log"
  echo "----- $LOGS/prometheus.log (last 10 lines)"; tail -n 10 "$LOGS/prometheus.log"
fi
exit "$rc"
