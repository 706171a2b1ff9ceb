#!/usr/bin/env bash
# Smoke test of a running test cluster (tests/cluster/cluster.sh up first):
# a 2-replica Deployment becomes available through the real controllers + podready, a pod labelled
# flagger-test/unready=true stays unready, the Istio and Gateway API CRDs accept valid objects and
# reject invalid ones, and namespace deletion completes. Exits non-zero on the first failure.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
[ -f "$STATE_DIR/env" ] || { echo "smoke: no running cluster (run cluster.sh up)" >&2; exit 1; }
# shellcheck disable=SC1091
. "$STATE_DIR/env"
k() { "$FLAGGER_TEST_KUBECTL" "$@"; }
ns=smoke-$$
fail() { echo "smoke: FAIL: $*" >&2; k delete ns "$ns" --wait=false >/dev/null 2>&1 || true; exit 1; }
wait_jsonpath() { # resource jsonpath want timeout
  local deadline=$((SECONDS + $4)) got
  while :; do
    got=$(k -n "$ns" get "$1" -o "jsonpath=$2" 2>/dev/null || true)
    [ "$got" = "$3" ] && return 0
    [ $SECONDS -lt $deadline ] || fail "$1 $2: want '$3', got '$got'"
    sleep 0.3
  done
}

k create ns "$ns" >/dev/null
k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo}
spec:
  replicas: 2
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers: [{name: podinfo, image: example.invalid/podinfo:6.0.0, ports: [{containerPort: 9898}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  replicas: 1
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken, flagger-test/unready: "true"}}
    spec:
      containers: [{name: broken, image: example.invalid/broken:1}]
YAML
wait_jsonpath deploy/podinfo '{.status.readyReplicas}/{.status.availableReplicas}' 2/2 60
echo "smoke: deployment podinfo available (readyReplicas 2)"
wait_jsonpath deploy/broken '{.status.replicas}' 1 60
sleep 2
[ -z "$(k -n "$ns" get deploy broken -o 'jsonpath={.status.readyReplicas}')" ] || fail "unready-labelled pod became ready"
echo "smoke: pod labelled flagger-test/unready=true stays unready"

k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: podinfo}
spec:
  hosts: [podinfo]
  gateways: [mesh]
  http:
  - route:
    - {destination: {host: podinfo-primary, port: {number: 9898}}, weight: 90}
    - {destination: {host: podinfo-canary, port: {number: 9898}}, weight: 10}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: podinfo-canary}
spec: {host: podinfo-canary}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: podinfo}
spec:
  parentRefs: [{name: gateway, namespace: istio-ingress}]
  hostnames: [podinfo.example.invalid]
  rules:
  - backendRefs:
    - {name: podinfo-primary, port: 9898, weight: 90}
    - {name: podinfo-canary, port: 9898, weight: 10}
YAML
echo "smoke: VirtualService, DestinationRule, HTTPRoute accepted"
if k -n "$ns" apply -f - >/dev/null 2>&1 <<YAML
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad}
spec: {hosts: [x], http: [{route: [{destination: {host: x}, weight: "ninety"}]}]}
YAML
then fail "invalid VirtualService accepted"; fi
if k -n "$ns" apply -f - >/dev/null 2>&1 <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad}
spec: {rules: [{backendRefs: [{name: x, port: 9898, weight: -5}]}]}
YAML
then fail "invalid HTTPRoute accepted"; fi
echo "smoke: invalid VirtualService and HTTPRoute rejected by the CRD schemas"

k delete ns "$ns" --timeout 60s >/dev/null || fail "namespace deletion did not finish"
echo "smoke: namespace deleted; all checks passed"
