#!/usr/bin/env bash
# Extracts the real Istio and Gateway API CRDs from the Go module cache into a directory
# (default: <state dir>/crds). The module versions are pinned in crds/go.mod + crds/go.sum, so the
# YAML is verified against go.sum; nothing but the Go module proxy is contacted (and only when the
# modules are not in the module cache yet). No copy of the YAML is committed.
#   Istio        istio.io/api            kubernetes/customresourcedefinitions.gen.yaml
#                -> virtualservices + destinationrules (networking.istio.io)
#   Gateway API  sigs.k8s.io/gateway-api config/crd/standard/
#                -> gatewayclasses, gateways, httproutes, referencegrants (gateway.networking.k8s.io)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

out=${1:-$STATE_DIR/crds}
mkdir -p "$out"
rm -f "$out"/*.yaml

moddir() { (cd "$CRDS_MOD_DIR" && go mod download -json "$1") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }
istio=$(moddir istio.io/api)
gwapi=$(moddir sigs.k8s.io/gateway-api)
[ -d "$istio" ] && [ -d "$gwapi" ] || { echo "crds.sh: could not download the CRD modules" >&2; exit 1; }

# Pick single documents out of Istio's multi-document file by the CRD name.
pick() { # file crd-name...
  local file=$1; shift
  awk -v want="$*" '
    BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) wanted[w[i]] = 1 }
    function flush() { if (keep) printf "---\n%s", doc; doc = ""; keep = 0 }
    /^---[[:space:]]*$/ { flush(); next }
    { doc = doc $0 "\n" }
    /^  name: / { if ($2 in wanted) keep = 1 }
    END { flush() }
  ' "$file"
}
pick "$istio/kubernetes/customresourcedefinitions.gen.yaml" \
  virtualservices.networking.istio.io destinationrules.networking.istio.io >"$out/istio-networking.yaml"

for kind in gatewayclasses gateways httproutes referencegrants; do
  cp "$gwapi/config/crd/standard/gateway.networking.k8s.io_$kind.yaml" "$out/gateway-api-$kind.yaml"
done
chmod u+w "$out"/*.yaml

n=$(grep -h '^kind: CustomResourceDefinition' "$out"/*.yaml | wc -l)
[ "$n" -eq 6 ] || { echo "crds.sh: expected 6 CRDs, found $n in $out" >&2; exit 1; }
echo "CRDs ($(basename "$istio"), $(basename "$gwapi")) -> $out"
