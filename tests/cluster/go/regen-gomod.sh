#!/usr/bin/env bash
# Regenerates go.mod/go.sum of the test-cluster wrapper module from scratch.
# Run this ONLY to bump versions; the committed go.mod/go.sum are what build.sh uses.
#
#   K8S_VERSION=v1.36.3 ./regen-gomod.sh
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod requires every staging module
# (k8s.io/api, k8s.io/client-go, ...) at the non-existent version v0.0.0 and resolves them with
# `replace k8s.io/x => ./staging/src/k8s.io/x`, which is ignored when k8s.io/kubernetes is a
# dependency. So this wrapper replaces every staging module with its published v0.<minor>.<patch>
# tag; the list of staging modules is read from k8s.io/kubernetes's own go.mod.
set -euo pipefail
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
cd "$(dirname "$0")"

K8S=${K8S_VERSION:-v1.36.3}
STAGING=v0.${K8S#v1.}
MODPATH=flagger.invalid/testcluster

rm -f go.mod go.sum
go mod init "$MODPATH"
go mod edit -go=1.26.0

KMOD=$(go mod download -json "k8s.io/kubernetes@$K8S" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$KMOD" ] || { echo "could not download k8s.io/kubernetes@$K8S" >&2; exit 1; }
mods=$(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$KMOD")
echo "staging modules in k8s.io/kubernetes@$K8S: $(echo "$mods" | wc -l)"
for m in $mods; do
  go mod edit -replace="$m=$m@$STAGING"
done

go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S" \
  "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S" \
  "k8s.io/kubernetes/cmd/kubectl@$K8S"

# etcd server: pin to the version k8s.io/kubernetes already selects for its etcd client, so the
# `go get` does not upgrade the client inside kube-apiserver.
ETCD=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
echo "etcd server version selected by k8s: $ETCD"
go get -tool "go.etcd.io/etcd/server/v3@$ETCD"

go mod tidy
echo "done: k8s.io/kubernetes $K8S, staging $STAGING, etcd $ETCD"
