# Shared settings for build.sh and cluster.sh (sourced, not executed).
# shellcheck shell=bash

CLUSTER_SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CLUSTER_SRC_DIR/../.." && pwd)
GO_MOD_DIR="$CLUSTER_SRC_DIR/go"
CRDS_MOD_DIR="$CLUSTER_SRC_DIR/crds"

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

# Versions come from the committed go.mod (the single source of truth).
K8S_VERSION=$(sed -n 's#^[[:space:]]*k8s\.io/kubernetes \(v[0-9][^ ]*\).*#\1#p' "$GO_MOD_DIR/go.mod" | head -n1)
ETCD_VERSION=$(sed -n 's#^[[:space:]]*go\.etcd\.io/etcd/server/v3 \(v[0-9][^ ]*\).*#\1#p' "$GO_MOD_DIR/go.mod" | head -n1)
[ -n "$K8S_VERSION" ] && [ -n "$ETCD_VERSION" ] || { echo "cannot read versions from $GO_MOD_DIR/go.mod" >&2; exit 1; }

K8S_CACHE_ROOT=${FLAGGER_K8S_CACHE:-$HOME/.cache/flagger-rs/k8s}
BIN_DIR="$K8S_CACHE_ROOT/$K8S_VERSION"
K8S_BINS=(kube-apiserver kube-controller-manager kubectl etcd)

# podready is project code: its cached binary is keyed by a hash of its sources and go.mod/go.sum.
PODREADY_HASH=$(cat "$GO_MOD_DIR/go.mod" "$GO_MOD_DIR/go.sum" "$GO_MOD_DIR"/cmd/podready/*.go | sha256sum | cut -c1-12)
PODREADY_BIN="$BIN_DIR/podready-$PODREADY_HASH"

STATE_DIR=${FLAGGER_TEST_CLUSTER_DIR:-$REPO_ROOT/target/test-cluster}
