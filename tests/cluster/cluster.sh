#!/usr/bin/env bash
# Loopback Kubernetes control plane for integration tests.
#
#   tests/cluster/cluster.sh up       build (if not cached) and start etcd, kube-apiserver,
#                                     kube-controller-manager and podready; install the Istio and
#                                     Gateway API CRDs; write <state>/kubeconfig and <state>/env
#   tests/cluster/cluster.sh down     stop exactly the recorded PIDs (TERM, then KILL), drop etcd data
#   tests/cluster/cluster.sh status   show the recorded processes
#   tests/cluster/cluster.sh kubectl ARGS...   run the cached kubectl against the cluster
#
# State dir: ${FLAGGER_TEST_CLUSTER_DIR:-<repo>/target/test-cluster}. Everything listens on
# 127.0.0.1 only; Service ClusterIPs (10.0.0.0/16) are allocations that nothing ever connects to.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

TIMEOUT=${FLAGGER_TEST_CLUSTER_TIMEOUT:-180}   # seconds per component to become ready
PKI="$STATE_DIR/pki"
PIDS="$STATE_DIR/pids"
LOGS="$STATE_DIR/logs"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"
COMPONENTS=(etcd kube-apiserver kube-controller-manager podready)   # start order

log() { echo "[test-cluster] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- process bookkeeping ---------------------------------------------------------------------

# pid_of NAME: prints the recorded PID if that process is still alive and still runs the
# binary we started (guards against PID reuse); prints nothing otherwise.
pid_of() {
  local f="$PIDS/$1.pid" pid exe
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  [ -d "/proc/$pid" ] || return 0
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  # a zombie has no exe link; a reused PID runs something else
  [ -n "$exe" ] || return 0
  [ "$(cat "$PIDS/$1.exe" 2>/dev/null)" = "${exe% (deleted)}" ] || return 0
  echo "$pid"
}

# start NAME BINARY ARGS...: starts a component in its own session, logs to $LOGS/NAME.log
start() {
  local name=$1 bin=$2; shift 2
  [ -x "$bin" ] || die "missing binary $bin (run tests/cluster/build.sh)"
  # No job control in a script: the child is not a process-group leader, so setsid calls
  # setsid(2) and execs in place, and $! is the component's own PID (checked below).
  setsid "$bin" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$PIDS/$name.pid"
  readlink -f "$bin" >"$PIDS/$name.exe"
  sleep 0.2
  local exe
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  if [ -n "$exe" ] && [ "${exe% (deleted)}" != "$(cat "$PIDS/$name.exe")" ]; then
    die "$name: PID $pid runs $exe, not $bin"
  fi
  log "started $name (pid $pid, log $LOGS/$name.log)"
}

stop_all() {
  local name pid pids=() names=()
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    name=${COMPONENTS[i]}
    pid=$(pid_of "$name")
    if [ -n "$pid" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$name")
      log "sent SIGTERM to $name (pid $pid)"
    fi
  done
  local deadline=$((SECONDS + ${FLAGGER_TEST_CLUSTER_STOP_GRACE:-8}))
  for ((i = 0; i < ${#pids[@]}; i++)); do
    while [ -n "$(pid_of "${names[i]}")" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if [ -n "$(pid_of "${names[i]}")" ]; then
      kill -KILL "${pids[i]}" 2>/dev/null || true
      log "sent SIGKILL to ${names[i]} (pid ${pids[i]})"
    fi
  done
  for ((i = 0; i < ${#pids[@]}; i++)); do
    local n=0
    while [ -n "$(pid_of "${names[i]}")" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    [ -z "$(pid_of "${names[i]}")" ] || log "WARNING: ${names[i]} (pid ${pids[i]}) is still alive"
  done
  rm -f "$PIDS"/*.pid "$PIDS"/*.exe
}

# --- helpers ---------------------------------------------------------------------------------

port_taken() { # port: true if something listens on 127.0.0.1:port or we already chose it
  local p=$1
  [[ " ${CHOSEN_PORTS:-} " == *" $p "* ]] && return 0
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && return 0
  if command -v ss >/dev/null; then
    ss -Htan "sport = :$p" 2>/dev/null | grep -q . && return 0
  fi
  return 1
}
free_port() { # VAR: a free port below the ephemeral range (32768+), so outgoing connections cannot grab it
  local p tries=0
  while :; do
    p=$((20000 + RANDOM % 12000))
    port_taken "$p" || break
    tries=$((tries + 1)); [ $tries -lt 200 ] || die "no free port found"
  done
  CHOSEN_PORTS="${CHOSEN_PORTS:-} $p"
  printf -v "$1" '%s' "$p"
}

wait_for() { # name pidname command...: retries command until it succeeds or the component dies
  local what=$1 comp=$2; shift 2
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [ -z "$(pid_of "$comp")" ]; then
      log "$comp exited; last log lines:"; tail -n 40 "$LOGS/$comp.log" >&2 || true
      die "$what failed"
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "timeout; last log lines of $comp:"; tail -n 40 "$LOGS/$comp.log" >&2 || true
      die "$what: not ready after ${TIMEOUT}s"
    fi
    sleep 0.5
  done
  log "$what: ready after $((SECONDS - ${UP_START:-0}))s"
}

api_get() { # path: GET against the API server with the admin client cert
  curl -sf --max-time 5 --noproxy '*' --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT$1"
}

gen_pki() {
  rm -rf "$PKI"; mkdir -p "$PKI"; chmod 700 "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -sha256 -subj "/CN=flagger-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.crt 2>/dev/null
    sign() { # name subject extensions
      openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -sha256 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sign apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    sign admin "/O=system:masters/CN=flagger-test-admin" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  [ -s "$PKI/admin.crt" ] && [ -s "$PKI/apiserver.crt" ] && [ -s "$PKI/sa.pub" ] || die "PKI generation failed"
}

write_kubeconfig() {
  local tmp="$KUBECONFIG_FILE.tmp"
  b64() { base64 -w0 <"$1"; }
  cat >"$tmp" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: flagger-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: flagger-test-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: flagger-test
  context:
    cluster: flagger-test
    user: flagger-test-admin
    namespace: default
current-context: flagger-test
KCFG
  chmod 600 "$tmp"; mv "$tmp" "$KUBECONFIG_FILE"
}

kctl() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# --- commands --------------------------------------------------------------------------------

cmd_up() {
  UP_START=$SECONDS
  mkdir -p "$STATE_DIR" "$PIDS" "$LOGS"
  local running=0 c
  for c in "${COMPONENTS[@]}"; do [ -n "$(pid_of "$c")" ] && running=$((running + 1)); done
  if [ $running -eq ${#COMPONENTS[@]} ] && [ -f "$STATE_DIR/env" ]; then
    API_PORT=$(sed -n 's/^export FLAGGER_TEST_APISERVER_PORT=//p' "$STATE_DIR/env")
    if api_get /readyz >/dev/null; then
      log "already running (kubeconfig $KUBECONFIG_FILE)"; return 0
    fi
  fi
  [ $running -eq 0 ] || { log "stale processes found, stopping them first"; stop_all; }

  "$CLUSTER_SRC_DIR/build.sh" >&2
  for c in openssl curl setsid base64; do command -v $c >/dev/null || die "$c is required"; done

  rm -rf "$STATE_DIR/etcd" "$STATE_DIR/kcm-certs" "$STATE_DIR/env" "$KUBECONFIG_FILE" "$LOGS"
  mkdir -p "$LOGS" "$STATE_DIR/kcm-certs"
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "up failed, stopping what was started"; stop_all; fi' EXIT

  free_port ETCD_PORT; free_port ETCD_PEER_PORT; free_port API_PORT; free_port KCM_PORT
  gen_pki

  start etcd "$BIN_DIR/etcd" \
    --name flagger-test --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "flagger-test=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --unsafe-no-fsync --auto-compaction-mode periodic --auto-compaction-retention 5m \
    --quota-backend-bytes 2147483648 --log-level warn
  wait_for "etcd /health" etcd \
    sh -c "curl -sf --max-time 2 --noproxy '*' http://127.0.0.1:$ETCD_PORT/health | grep -q '\"health\":\"true\"'"

  start kube-apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.0.0.0/16 --endpoint-reconciler-type none \
    --disable-admission-plugins ServiceAccount,TaintNodesByCondition \
    --allow-privileged=true --enable-priority-and-fairness=false --profiling=false
  wait_for "kube-apiserver /readyz" kube-apiserver api_get /readyz
  write_kubeconfig

  start kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" \
    --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --cert-dir "$STATE_DIR/kcm-certs" \
    --leader-elect=false --profiling=false \
    --controllers deployment-controller,replicaset-controller,garbage-collector-controller,namespace-controller \
    --kube-api-qps 100 --kube-api-burst 200 --concurrent-deployment-syncs 5 --concurrent-replicaset-syncs 5
  wait_for "kube-controller-manager /healthz" kube-controller-manager \
    curl -skf --max-time 2 --noproxy '*' "https://127.0.0.1:$KCM_PORT/healthz"

  start podready "$PODREADY_BIN" --kubeconfig "$KUBECONFIG_FILE"

  "$CLUSTER_SRC_DIR/crds.sh" "$STATE_DIR/crds" >&2
  kctl apply --server-side --force-conflicts --field-manager flagger-test-cluster -f "$STATE_DIR/crds" >"$LOGS/crds-apply.log" 2>&1 \
    || { cat "$LOGS/crds-apply.log" >&2; die "installing CRDs failed"; }
  # (not `kubectl wait --for condition=...`: it errors out when .status.conditions is not set yet)
  local crd deadline=$((SECONDS + TIMEOUT))
  for crd in virtualservices.networking.istio.io destinationrules.networking.istio.io \
    gatewayclasses.gateway.networking.k8s.io gateways.gateway.networking.k8s.io \
    httproutes.gateway.networking.k8s.io referencegrants.gateway.networking.k8s.io; do
    until [ "$(kctl get crd "$crd" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ]; do
      [ $SECONDS -lt $deadline ] || die "CRD $crd not Established after ${TIMEOUT}s"
      sleep 0.3
    done
  done
  log "CRDs Established: Istio VirtualService/DestinationRule, Gateway API GatewayClass/Gateway/HTTPRoute/ReferenceGrant"
  [ -n "$(pid_of podready)" ] || { tail -n 40 "$LOGS/podready.log" >&2; die "podready exited"; }

  cat >"$STATE_DIR/env" <<ENV
# source this file: the loopback test cluster started by tests/cluster/cluster.sh up
export KUBECONFIG=$KUBECONFIG_FILE
export FLAGGER_TEST_APISERVER=https://127.0.0.1:$API_PORT
export FLAGGER_TEST_APISERVER_PORT=$API_PORT
export FLAGGER_TEST_ETCD=http://127.0.0.1:$ETCD_PORT
export FLAGGER_TEST_KCM_PORT=$KCM_PORT
export FLAGGER_TEST_KUBECTL=$BIN_DIR/kubectl
ENV
  trap - EXIT
  log "up in $((SECONDS - UP_START))s: KUBECONFIG=$KUBECONFIG_FILE (API https://127.0.0.1:$API_PORT)"
}

cmd_down() {
  if [ -d "$PIDS" ]; then stop_all; fi
  rm -rf "$STATE_DIR/etcd" "$STATE_DIR/env" "$KUBECONFIG_FILE"
  log "down (logs kept in $LOGS)"
}

cmd_status() {
  local c pid rc=0
  for c in "${COMPONENTS[@]}"; do
    pid=$(pid_of "$c")
    if [ -n "$pid" ]; then echo "$c: running (pid $pid)"; else echo "$c: not running"; rc=1; fi
  done
  return $rc
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kubectl) shift; kctl "$@" ;;
  *) echo "usage: $0 up|down|status|kubectl ARGS..." >&2; exit 2 ;;
esac
