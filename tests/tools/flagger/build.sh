#!/usr/bin/env bash
# Prints the path of a Flagger operator binary (cmd/flagger) built from the Go module pinned in
# go.mod, building it first if the cache has none:
# ${FLAGGER_GO_CACHE:-$HOME/.cache/flagger-rs/flagger}/<version>/flagger.
# The real Flagger is what the migration scenario of tests/e2e replaces with ours; none of its
# code is kept in this repository, only the pins (go.mod, go.sum). Progress goes to stderr so
# callers can write FLAGGER_GO=$(tests/tools/flagger/build.sh). Only the Go module proxy is
# contacted; a cold build takes a few minutes on 2 cores.
set -euo pipefail
MOD_DIR=$(cd "$(dirname "$0")" && pwd)

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

FLAGGER_VERSION=$(sed -n 's#^[[:space:]]*github\.com/fluxcd/flagger \(v[0-9][^ ]*\).*#\1#p' "$MOD_DIR/go.mod" | head -n1)
[ -n "$FLAGGER_VERSION" ] ||
  { echo "flagger build: cannot read the flagger version from $MOD_DIR/go.mod" >&2; exit 1; }

CACHE=${FLAGGER_GO_CACHE:-$HOME/.cache/flagger-rs/flagger}/$FLAGGER_VERSION
if [ -x "$CACHE/flagger" ]; then
  echo "$CACHE/flagger"
  exit 0
fi

command -v go >/dev/null || { echo "flagger build: no go toolchain on PATH" >&2; exit 1; }
# Flagger's release images set only the revision; the version is a constant of the source.
ldf="-s -w -X github.com/fluxcd/flagger/pkg/version.REVISION=$FLAGGER_VERSION"

echo "building flagger $FLAGGER_VERSION into $CACHE ($(go version))" >&2
mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A private build cache, deleted with $tmp: the binary is cached by version, so the compiled
# packages would only take disk from the Rust build that follows. No DWARF either.
export GOCACHE="$tmp/gocache"
t0=$(date +%s)
(cd "$MOD_DIR" && nice -n 15 go build -trimpath -gcflags=all=-dwarf=false -ldflags "$ldf" -o "$tmp/flagger" github.com/fluxcd/flagger/cmd/flagger)
mv "$tmp/flagger" "$CACHE/flagger"
echo "built flagger $FLAGGER_VERSION in $(( $(date +%s) - t0 ))s" >&2
echo "$CACHE/flagger"
