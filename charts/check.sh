#!/usr/bin/env bash
# Chart checks, no cluster needed:
#   - helm lint --strict of charts/flagger and charts/grafana;
#   - helm template of charts/flagger with the default values and with each optional feature
#     on (leader election, sharding, ServiceMonitor, PodMonitor, notifiers, trace recording, a watch
#     namespace), every rendering validated by tests/tools/helm/cmd/chartcheck: strict decoding
#     into the Kubernetes API types, the hardened pod and its probes, flags that
#     `flagger run --help` lists and that the binary then parses, least-privilege RBAC, a
#     Lease grant exactly when needed, and with trace recording a writable volume at the
#     -record-traces directory while the recordings listener stays on loopback (no container
#     port, no Service port: recordings are fetched through kubectl port-forward);
#   - settings the chart must refuse (both monitors at once, values.schema.json violations) are
#     refused with a message saying which value is wrong;
#   - fixtures/examples against the chart's CRDs (schema and unknown fields) and each other;
#   - the Grafana dashboard: structure, variables, every operator metric shown, PromQL parsed by
#     promtool when it is installed, and shipped unchanged by charts/grafana.
#
# helm is built from the Go module pinned in tests/tools/helm/go.mod (cached per version, see
# tests/tools/helm/build.sh). FLAGGER_BIN may name a prebuilt operator binary; otherwise the
# debug binary is built with cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
TOOLS="$REPO/tests/tools/helm"

step() { printf '\n--> %s\n' "$*"; }
die() { printf '\nchart checks FAILED: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flagger-chart-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

step "helm"
HELM=$("$TOOLS/build.sh") || die "could not build helm from $TOOLS/go.mod"
echo "helm $("$HELM" version --template '{{ .Version }}') ($HELM)"
# Keep helm away from the user's repositories, plugins and caches.
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"

step "chartcheck"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
# Its own tests first: each check must reject what it is there to reject.
(cd "$TOOLS" && go vet ./cmd/chartcheck && go test ./cmd/chartcheck) || die "chartcheck's own tests failed"
CHECK_HASH=$(cat "$TOOLS/go.mod" "$TOOLS/go.sum" "$TOOLS"/cmd/chartcheck/*.go | sha256sum | cut -c1-12)
CHARTCHECK="$(dirname "$HELM")/chartcheck-$CHECK_HASH"
if [ ! -x "$CHARTCHECK" ]; then
  (cd "$TOOLS" && nice -n 15 go build -trimpath -o "$WORK/chartcheck" ./cmd/chartcheck) ||
    die "could not build chartcheck"
  rm -f "$(dirname "$HELM")"/chartcheck-*   # builds of earlier sources
  mv "$WORK/chartcheck" "$CHARTCHECK"
fi
echo "$CHARTCHECK"

step "flagger binary (for its flag names)"
if [ -z "${FLAGGER_BIN:-}" ]; then
  cargo build --quiet --locked -p flagger --bin flagger || die "cargo build of the flagger binary failed"
  FLAGGER_BIN="$REPO/target/debug/flagger"
fi
"$FLAGGER_BIN" run --help >"$WORK/run-help.txt" || die "$FLAGGER_BIN run --help failed"
echo "$FLAGGER_BIN: $(grep -c -- '^ *--' "$WORK/run-help.txt") flags"

step "image: Dockerfile, chart and binary agree"
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/flagger/Chart.yaml)
crate_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
binary_version=$("$FLAGGER_BIN" --version)
[ "$app_version" = "$crate_version" ] && [ "$app_version" = "$binary_version" ] ||
  die "versions differ: chart appVersion '$app_version', workspace '$crate_version', binary '$binary_version'"
repository=$(sed -n '/^image:/,/^[^ ]/s/^  repository: *\(.*\)$/\1/p' charts/flagger/values.yaml)
grep -qF "$repository:" Dockerfile || die "the Dockerfile does not say it builds $repository (values.yaml image.repository)"
grep -qx 'USER 10001:10001' Dockerfile || die "the Dockerfile's runtime user is not 10001:10001, the chart's runAsUser/runAsGroup"
grep -qx 'EXPOSE 8080' Dockerfile || die "the Dockerfile does not expose 8080, the chart's container port"
grep -qx 'ENTRYPOINT \["/flagger"\]' Dockerfile || die "the Dockerfile's entrypoint is not /flagger"
grep -q -- '--locked -p flagger --bin flagger --target' Dockerfile || die "the Dockerfile does not build the flagger binary"
echo "  ok: $repository:$app_version runs /flagger as 10001 on port 8080"

step "helm lint"
"$HELM" lint --strict charts/flagger || die "helm lint charts/flagger"
"$HELM" lint --strict charts/grafana || die "helm lint charts/grafana"

# render NAME [helm template args...] -> $WORK/NAME.yaml
render() {
  local name=$1; shift
  "$HELM" template flagger charts/flagger --namespace flagger-system "$@" >"$WORK/$name.yaml" ||
    die "helm template ($name): $*"
}
# check NAME [chartcheck render args...]
check() {
  local name=$1; shift
  echo "$name:"
  "$CHARTCHECK" render -help-text "$WORK/run-help.txt" -args-out "$WORK/$name.args" "$@" "$WORK/$name.yaml" ||
    die "rendered chart ($name) failed validation; see $name above"
  accepts "$name"
}
# accepts NAME: the operator binary parses the rendered container args (it exits 2 on a usage
# error and only then). It runs against a kubeconfig whose API server is a closed loopback port,
# so it stops at its first API call; trace recording is pointed into the scratch directory.
printf '%s\n' 'apiVersion: v1' 'kind: Config' 'current-context: none' \
  'clusters: [{name: none, cluster: {server: "http://127.0.0.1:9"}}]' \
  'contexts: [{name: none, context: {cluster: none, user: none}}]' 'users: [{name: none, user: {}}]' \
  >"$WORK/kubeconfig"
accepts() {
  local name=$1 rc=0
  local -a args
  mapfile -t args < <(sed "s#^-record-traces=.*#-record-traces=$WORK/traces#" "$WORK/$name.args")
  timeout 30 "$FLAGGER_BIN" "${args[@]}" "-kubeconfig=$WORK/kubeconfig" -port=0 -recordings-address=127.0.0.1:0 \
    >"$WORK/$name.run.log" 2>&1 </dev/null || rc=$?
  if [ "$rc" -eq 2 ]; then
    die "flagger refuses the chart's args ($name): $(grep '^flagger:' "$WORK/$name.run.log" | head -n1)"
  fi
  echo "  ok: flagger $(head -n1 "$WORK/$name.args") accepts the ${#args[@]} rendered args (exit $rc without an API server)"
}

step "helm template charts/flagger"
render defaults --include-crds
check defaults \
  -require CustomResourceDefinition/canaries.flagger.app \
  -require CustomResourceDefinition/metrictemplates.flagger.app \
  -require CustomResourceDefinition/alertproviders.flagger.app \
  -require ServiceAccount -require ClusterRole -require ClusterRoleBinding -require Deployment -require Service \
  -absent Role -absent RoleBinding -absent ServiceMonitor -absent PodMonitor -absent Secret
# The defaults must keep rendering the flags whose absence would change the operator's behaviour.
for arg in '"-metrics-server=http://prometheus:9090"' '"-enable-leader-election=false"' '"-enable-config-tracking=true"'; do
  grep -qF -- "- $arg" "$WORK/defaults.yaml" || die "default rendering lacks the arg $arg"
done

render leader-servicemonitor \
  --set leaderElection.enabled=true --set leaderElection.replicaCount=2 \
  --set serviceMonitor.enabled=true \
  --set slack.url=https://slack.invalid/hooks/x --set slack.channel=deployments \
  --set eventWebhook=http://events.invalid/ --set clusterName=staging \
  --set recordTraces.enabled=true --set meshProvider=gatewayapi:v1 --set logLevel=debug \
  --set minAnalysisInterval=1s --set controlLoopInterval=5s --set threadiness=4 \
  --set maxWritesInFlight=8 --set maxConcurrentInitializations=64
check leader-servicemonitor -require Role -require RoleBinding -require ServiceMonitor -require Secret -absent PodMonitor
# Recording keeps the hardening: the only writable path is the recording volume.
grep -qF -- '- "-record-traces=/var/lib/flagger/traces"' "$WORK/leader-servicemonitor.yaml" ||
  die "recordTraces.enabled=true does not render -record-traces=/var/lib/flagger/traces"
grep -q 'readOnlyRootFilesystem: true' "$WORK/leader-servicemonitor.yaml" ||
  die "recordTraces.enabled=true made the root filesystem writable"
for flag in -max-writes-in-flight=8 -max-concurrent-initializations=64; do
  grep -qxF -- "$flag" "$WORK/leader-servicemonitor.args" || die "the chart does not render $flag"
done
# Notifier URLs travel in the Secret, never in the pod spec.
if sed -n '/^kind: Deployment/,/^---/p' "$WORK/leader-servicemonitor.yaml" | grep -q 'slack.invalid\|events.invalid'; then
  die "a notifier URL leaked into the Deployment"
fi

render scoped-podmonitor \
  --set namespace=team-a --set leaderElection.enabled=true \
  --set podMonitor.enabled=true --set configTracking.enabled=false --set selectorLabels=app
check scoped-podmonitor -require Role/flagger-leader-election -require PodMonitor -absent ServiceMonitor
# A scoped operator keeps its Lease in the watched namespace.
grep -q 'namespace: team-a' "$WORK/scoped-podmonitor.yaml" || die "the Lease Role is not in the watch namespace"

render sharded \
  --set sharding.enabled=true --set sharding.replicaCount=3 --set sharding.shards=12 \
  --set sharding.by=namespace --set sharding.leaseDuration=10s
check sharded -require Role/flagger-shards -require RoleBinding/flagger-shards -absent Role/flagger-leader-election
for arg in '"-shards=12"' '"-shard-by=namespace"' '"-shard-lease-duration=10s"' '"-leader-election-namespace=flagger-system"'; do
  grep -qF -- "- $arg" "$WORK/sharded.yaml" || die "sharding.enabled=true does not render the arg $arg"
done
grep -q '^  replicas: 3$' "$WORK/sharded.yaml" || die "sharding.replicaCount=3 does not render 3 replicas"

render existing-serviceaccount --set serviceAccount.create=false --set serviceAccount.name=ops-flagger
check existing-serviceaccount -absent ServiceAccount -require ClusterRoleBinding
grep -q 'serviceAccountName: ops-flagger' "$WORK/existing-serviceaccount.yaml" ||
  die "with serviceAccount.create=false the Deployment does not run as serviceAccount.name"

step "settings the chart refuses"
# refused EXPECTED-MESSAGE HELM-SET-ARGS...: helm template must fail, saying EXPECTED-MESSAGE.
refused() {
  local want=$1; shift
  if "$HELM" template flagger charts/flagger "$@" >"$WORK/refused.yaml" 2>"$WORK/refused.err"; then
    die "helm template accepted $*"
  fi
  grep -qF -- "$want" "$WORK/refused.err" ||
    die "helm template refused $* but without saying '$want': $(cat "$WORK/refused.err")"
  echo "  ok: refused $*"
}
refused 'enable at most one of serviceMonitor.enabled and podMonitor.enabled' \
  --set serviceMonitor.enabled=true --set podMonitor.enabled=true
# values.schema.json: what the operator would reject at start-up fails at install time instead.
refused "at '/meshProvider'" --set meshProvider=linkerd
refused "at '/logLevel'" --set logLevel=verbose
refused "at '/maxWritesInFlight'" --set maxWritesInFlight=0
refused "at '/leaderElection/replicaCount'" --set leaderElection.enabled=true --set leaderElection.replicaCount=0
refused "at '/extraArgs/0'" --set 'extraArgs={--two-dashes}'
refused 'enable at most one of sharding.enabled and leaderElection.enabled' \
  --set sharding.enabled=true --set leaderElection.enabled=true
refused 'sharding.shards must be at least sharding.replicaCount' \
  --set sharding.enabled=true --set sharding.replicaCount=4 --set sharding.shards=3
refused "at '/sharding/leaseDuration'" --set sharding.enabled=true --set sharding.leaseDuration=1m
refused "at '/sharding/by'" --set sharding.enabled=true --set sharding.by=pod

step "examples (fixtures/examples) against the chart's CRDs"
"$CHARTCHECK" examples charts/flagger/crds/crd.yaml fixtures/examples/*.yaml || die "fixtures/examples failed validation"

step "Grafana dashboard"
"$HELM" template flagger-grafana charts/grafana --namespace monitoring >"$WORK/grafana.yaml" ||
  die "helm template charts/grafana"
"$CHARTCHECK" dashboard -configmap "$WORK/grafana.yaml" -rules-out "$WORK/dashboard-rules.yaml" \
  charts/grafana/dashboards/canary.json || die "charts/grafana/dashboards/canary.json failed validation"
if command -v promtool >/dev/null 2>&1; then
  promtool check rules "$WORK/dashboard-rules.yaml" >"$WORK/promtool.out" 2>&1 ||
    die "promtool rejects a dashboard query: $(cat "$WORK/promtool.out")"
  echo "  ok: promtool parses every query"
else
  echo "  skipped: promtool is not installed, queries were not parsed by Prometheus"
fi

printf '\nchart checks passed (helm %s)\n' "$("$HELM" version --template '{{ .Version }}')"
