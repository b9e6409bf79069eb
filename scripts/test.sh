#!/usr/bin/env bash
# Runs the whole test suite on a Debian machine, installing what the tests need first:
# Debian packages (OpenSSH client and server, sshpass, Chromium, Python venv, Node), the official SDKs in
# ./.venv and ./tests/node,
# then format and lint checks, the Rust tests (unit, conformance, integration), the end-to-end tests
# with the official SDKs against the real binary, and the shared contract check.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n== %s\n' "$*"; }

step "system packages"
need=()
command -v ssh-keygen >/dev/null || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v sshpass >/dev/null || need+=(sshpass)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v cc >/dev/null || need+=(build-essential)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}"
fi
command -v cargo >/dev/null || { echo "the Rust toolchain (rustup, cargo) is required"; exit 1; }

step "test dependencies (official SDKs)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)

step "format and lint"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

step "Rust tests"
cargo build --locked --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

export KEYPLANE_BIN="$root/target/debug/keyplane"

step "end-to-end: official Python SDKs"
.venv/bin/python -m pytest -q tests/e2e

step "end-to-end: official Node SDK, and the console in headless Chromium"
(cd tests/node && node --test)

step "contract check (SPEC section 11)"
if [ -x ../shared/tools/contract-check ]; then
  # Its SDK venv goes under the repository, not the home directory.
  XDG_CACHE_HOME="$root/.cache" ../shared/tools/contract-check "$KEYPLANE_BIN"
else
  echo "../shared/tools/contract-check not found; skipped"
fi

step "all tests passed"
