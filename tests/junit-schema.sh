#!/usr/bin/env bash
# Validates JUnit XML files against a published JUnit schema with a real XSD validator:
# junit-10.xsd, the Jenkins xUnit plugin's schema (MIT licence, Copyright (c) 2014 Gregory
# Boissinot), as pytest ships it in its source distribution on PyPI
# (testing/example_scripts/junit-10.xsd), checked by libxml2's `xmllint --schema`. The schema is
# fetched with pip at test time (pinned version, checked by its SHA-256) and cached; it is not
# part of this repository.
#
# Usage: tests/junit-schema.sh FILE.xml...   (exit 0 only when every file is valid)
set -euo pipefail

PYTEST_VERSION=8.3.5
XSD_SHA256=a1a816f58d1bf95ebabf371994df0b9246dee66ea9572fbec4f9296f1b2c0ff6
cache="${XDG_CACHE_HOME:-$HOME/.cache}/flagger-rs/junit-schema"
xsd="$cache/junit-10-pytest-$PYTEST_VERSION.xsd"

command -v xmllint >/dev/null || { echo "junit-schema: xmllint missing (apt-get install libxml2-utils)" >&2; exit 2; }

if ! { [ -f "$xsd" ] && echo "$XSD_SHA256  $xsd" | sha256sum -c --quiet 2>/dev/null; }; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    "pytest==$PYTEST_VERSION" -d "$tmp"
  mkdir -p "$cache"
  tar -xzf "$tmp/pytest-$PYTEST_VERSION.tar.gz" -O \
    "pytest-$PYTEST_VERSION/testing/example_scripts/junit-10.xsd" >"$tmp/junit-10.xsd"
  echo "$XSD_SHA256  $tmp/junit-10.xsd" | sha256sum -c --quiet
  mv "$tmp/junit-10.xsd" "$xsd"
fi

xmllint --noout --schema "$xsd" "$@"
