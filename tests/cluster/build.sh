#!/usr/bin/env bash
# Builds the loopback test cluster's binaries from Go modules (no downloads but the Go module proxy):
#   kube-apiserver, kube-controller-manager, kubectl (k8s.io/kubernetes, see go/go.mod),
#   etcd (go.etcd.io/etcd/server/v3) and podready (go/cmd/podready, this project's kubelet stand-in)
# into ${FLAGGER_K8S_CACHE:-$HOME/.cache/flagger-rs/k8s}/<k8s version>/.
# Warm run (all binaries present): does nothing. Cold run on 2 cores: see README.md.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

start=$(date +%s)
missing=()
for b in "${K8S_BINS[@]}"; do
  [ -x "$BIN_DIR/$b" ] || missing+=("$b")
done
[ -x "$PODREADY_BIN" ] || missing+=(podready)

if [ ${#missing[@]} -eq 0 ]; then
  echo "test-cluster binaries for k8s $K8S_VERSION / etcd $ETCD_VERSION are cached in $BIN_DIR (nothing to build)"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: no go toolchain on PATH (need Go >= 1.26)" >&2; exit 1; }
echo "building ${missing[*]} for k8s $K8S_VERSION / etcd $ETCD_VERSION into $BIN_DIR ($(go version))"
mkdir -p "$BIN_DIR"
tmp=$(mktemp -d "$BIN_DIR/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A private build cache, deleted with $tmp: the binaries are cached by version, so the compiled
# packages would only take disk from the Rust build that follows. No DWARF in them either (the
# binaries are stripped anyway): the cache peaks at 2.5 GB instead of about 4.
export GOCACHE="$tmp/gocache"

cd "$GO_MOD_DIR"
minor=$(echo "$K8S_VERSION" | cut -d. -f2)
ldf="-s -w"
ldf="$ldf -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
ldf="$ldf -X k8s.io/component-base/version.gitMajor=1"
ldf="$ldf -X k8s.io/component-base/version.gitMinor=$minor"
ldf="$ldf -X k8s.io/component-base/version.gitTreeState=clean"
ldf="$ldf -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
ldf="$ldf -X k8s.io/client-go/pkg/version.gitMajor=1"
ldf="$ldf -X k8s.io/client-go/pkg/version.gitMinor=$minor"
ldf="$ldf -X k8s.io/client-go/pkg/version.gitTreeState=clean"

pkgs=()
for b in "${missing[@]}"; do
  case $b in
    kube-apiserver|kube-controller-manager|kubectl) pkgs+=("k8s.io/kubernetes/cmd/$b") ;;
  esac
done
if [ ${#pkgs[@]} -gt 0 ]; then
  t0=$(date +%s)
  go build -trimpath -gcflags=all=-dwarf=false -ldflags "$ldf" -o "$tmp/" "${pkgs[@]}"
  echo "  built ${pkgs[*]##*/} in $(( $(date +%s) - t0 ))s"
fi
if [[ " ${missing[*]} " == *" etcd "* ]]; then
  t0=$(date +%s)
  go build -trimpath -gcflags=all=-dwarf=false -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
  echo "  built etcd in $(( $(date +%s) - t0 ))s"
fi
if [[ " ${missing[*]} " == *" podready "* ]]; then
  t0=$(date +%s)
  go build -trimpath -gcflags=all=-dwarf=false -ldflags "-s -w" -o "$tmp/podready" ./cmd/podready
  mv "$tmp/podready" "$PODREADY_BIN"

  echo "  built podready in $(( $(date +%s) - t0 ))s"
fi
for b in "${K8S_BINS[@]}"; do
  if [ -f "$tmp/$b" ]; then mv "$tmp/$b" "$BIN_DIR/$b"; fi
done

elapsed=$(( $(date +%s) - start ))
echo "test-cluster build finished in ${elapsed}s ($(( elapsed / 60 ))m$(( elapsed % 60 ))s): $BIN_DIR"
"$BIN_DIR/kube-apiserver" --version 2>/dev/null || true
