#!/usr/bin/env bash
# Supply chain (issue #24): `cargo deny` over the workspace with deny.toml — licenses (permissive
# ones named there), bans (no wildcard versions) and sources (crates.io only) always; security
# advisories when the RustSec database (a GitHub repository) can be fetched. These machines
# reach crates.io but not GitHub, so there the advisories are reported as NOT checked, never
# as passed.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.20.2
if ! command -v cargo-deny >/dev/null 2>&1 || ! cargo deny --version | grep -q " $version"; then
  echo "[deny] installing cargo-deny $version" >&2
  cargo install --locked cargo-deny --version "$version"
fi

cargo deny --log-level error check licenses bans sources
if cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error check advisories
else
  echo "[deny] advisories NOT checked: the RustSec advisory database could not be fetched (no route to github.com)" >&2
fi
