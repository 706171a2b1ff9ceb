# shellcheck shell=bash
# Sourced by run.sh and scale.sh: starts the test cluster (or reuses the one running in
# $FLAGGER_TEST_CLUSTER_DIR, then leaving it running: STARTED_CLUSTER stays 0), exports its
# KUBECONFIG and installs the chart's CRDs, waiting until each is Established. Needs CLUSTER,
# LOGS, log and die from the caller.
cluster_up_with_crds() {
  if "$CLUSTER" status >/dev/null 2>&1; then
    log "reusing the running test cluster in $FLAGGER_TEST_CLUSTER_DIR"
  else
    STARTED_CLUSTER=1
  fi
  "$CLUSTER" up >"$LOGS/cluster.log" 2>&1 || { tail -n 40 "$LOGS/cluster.log"; die "starting the test cluster failed"; }
  export KUBECONFIG=$FLAGGER_TEST_CLUSTER_DIR/kubeconfig
  "$CLUSTER" kubectl apply --server-side --force-conflicts --field-manager flagger-e2e \
    -f charts/flagger/crds/crd.yaml >>"$LOGS/cluster.log" 2>&1 || die "installing Flagger's CRDs failed"
  local crd n
  for crd in canaries.flagger.app metrictemplates.flagger.app alertproviders.flagger.app; do
    n=0
    until [ "$("$CLUSTER" kubectl get crd "$crd" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ]; do
      n=$((n + 1)); [ $n -lt 100 ] || die "CRD $crd not Established"
      sleep 0.2
    done
  done
}
