#!/usr/bin/env bash
# Every test of the project, in the order that fails fastest: formatting and lints, the unit,
# property and golden suites (no cluster needed), then the real-cluster suite (a kube-apiserver,
# etcd and kube-controller-manager built from Go modules, and a real Prometheus).
#
# Usage: tests/run.sh            everything
#        FLAGGER_SKIP_CLUSTER=1 tests/run.sh   without the real-cluster suite
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Incremental caches double the size of target/ and buy nothing on a one-shot run.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "cargo fmt --check"
cargo fmt --all -- --check

if [ "${FLAGGER_SKIP_CLUSTER:-0}" != 1 ]; then
  # Before any Rust is built: a cold Go build needs a few GB of scratch space for a few minutes,
  # which is then freed, so the two never need room at the same time.
  step "control-plane, helm and Flagger binaries (built from Go modules once, then cached)"
  tests/cluster/build.sh
  tests/tools/helm/build.sh >/dev/null
  # The real Flagger v1.44.0, which the migration scenario replaces with ours.
  tests/tools/flagger/build.sh >/dev/null
fi

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, property, golden, mocked API server)"
# insta refuses to write snapshots under CI, so a changed golden timeline fails here.
CI="${CI:-true}" cargo test --workspace --locked

step "flagger test fixtures/policies (the policies keep their suites; the unsafe one is caught; JUnit valid against junit-10.xsd)"
cargo build --locked -q -p flagger
flagger="${CARGO_TARGET_DIR:-target}/debug/flagger"
out="$(mktemp -d)"
# The safe policies, with the shared MetricTemplates their Canaries use: exit 0.
"$flagger" test fixtures/policies/podinfo.yaml fixtures/policies/payments fixtures/policies/templates \
  --counterexamples "$out/cx" --output junit >"$out/safe.xml"
# The whole tree is one run (subdirectories too); the unsafe policy in it makes it exit 1.
set +e
"$flagger" test fixtures/policies --counterexamples "$out/cx" --output junit >"$out/tree.xml"
tree_rc=$?
"$flagger" test fixtures/policies/unsafe --counterexamples "$out/cx" >/dev/null
unsafe_rc=$?
set -e
[ "$tree_rc" = 1 ] || { echo "fixtures/policies: expected exit 1, got $tree_rc" >&2; exit 1; }
[ "$unsafe_rc" = 1 ] || { echo "fixtures/policies/unsafe: expected exit 1, got $unsafe_rc" >&2; exit 1; }
grep -q '<failure ' "$out/tree.xml" || { echo "fixtures/policies: no <failure> in the JUnit output" >&2; exit 1; }
# Both reports against the published schema, with a real XSD validator (xmllint)...
tests/junit-schema.sh "$out/safe.xml" "$out/tree.xml"
# ...which does reject a report that breaks it (a testcase without its required name).
sed 's/<testcase name="[^"]*"/<testcase/' "$out/tree.xml" >"$out/broken.xml"
if tests/junit-schema.sh "$out/broken.xml" 2>/dev/null; then
  echo "junit-schema: a testcase without a name validated" >&2; exit 1
fi
rm -rf "$out"

step "replay charts in headless Chromium"
CI="${CI:-true}" cargo test --workspace --locked --test it -- --ignored replay_chart_browser::

if [ -x tests/e2e/run.sh ] && [ "${FLAGGER_SKIP_CLUSTER:-0}" != 1 ]; then
  step "real-cluster suite"
  tests/e2e/run.sh
fi
if [ -x charts/check.sh ] && [ "${FLAGGER_SKIP_CLUSTER:-0}" != 1 ]; then
  step "chart checks"
  charts/check.sh
fi
