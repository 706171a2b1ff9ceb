#!/usr/bin/env bash
# Prints the path of a helm binary built from the Go module pinned in go.mod, building it first
# if the cache has none: ${FLAGGER_HELM_CACHE:-$HOME/.cache/flagger-rs/helm}/<version>/helm.
# Progress goes to stderr so callers can write HELM=$(tests/tools/helm/build.sh).
# Only the Go module proxy is contacted; a cold build takes a few minutes on 2 cores.
set -euo pipefail
MOD_DIR=$(cd "$(dirname "$0")" && pwd)

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

HELM_VERSION=$(sed -n 's#^[[:space:]]*helm\.sh/helm/v3 \(v[0-9][^ ]*\).*#\1#p' "$MOD_DIR/go.mod" | head -n1)
K8S_MODULES_VERSION=$(sed -n 's#^[[:space:]]*k8s\.io/client-go \(v[0-9][^ ]*\).*#\1#p' "$MOD_DIR/go.mod" | head -n1)
[ -n "$HELM_VERSION" ] && [ -n "$K8S_MODULES_VERSION" ] ||
  { echo "helm build: cannot read the helm or client-go version from $MOD_DIR/go.mod" >&2; exit 1; }

CACHE=${FLAGGER_HELM_CACHE:-$HOME/.cache/flagger-rs/helm}/$HELM_VERSION
if [ -x "$CACHE/helm" ]; then
  echo "$CACHE/helm"
  exit 0
fi

command -v go >/dev/null || { echo "helm build: no go toolchain on PATH" >&2; exit 1; }
# client-go v0.N.x belongs to Kubernetes 1.N: helm reports that as its default cluster version
# (.Capabilities.KubeVersion in `helm template`), exactly as its own release builds do.
k8s_minor=$(echo "$K8S_MODULES_VERSION" | cut -d. -f2)
ldf="-s -w"
ldf="$ldf -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldf="$ldf -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldf="$ldf -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
done

echo "building helm $HELM_VERSION into $CACHE ($(go version))" >&2
mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A private build cache, deleted with $tmp: the binaries are cached by version, so the compiled
# packages would only take disk from the Rust build that follows. No DWARF in them either (the
# binaries are stripped anyway): the cache peaks at 2.5 GB instead of about 4.
export GOCACHE="$tmp/gocache"
t0=$(date +%s)
(cd "$MOD_DIR" && nice -n 15 go build -trimpath -gcflags=all=-dwarf=false -ldflags "$ldf" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm)
mv "$tmp/helm" "$CACHE/helm"
echo "built helm $HELM_VERSION in $(( $(date +%s) - t0 ))s" >&2
echo "$CACHE/helm"
