#!/usr/bin/env bash
# Runs the whole test suite on a Debian machine, installing what the tests need first:
# Debian packages (OpenSSH client and server, sshpass, Chromium, PostgreSQL, Python venv, Node,
# libfaketime for the agent's clock-jump test, strace, systemd-analyze and man for the package's checks), the
# official SDKs in ./.venv and ./tests/node,
# then format and lint checks, the Rust tests (unit, conformance, integration), the end-to-end tests
# with the official SDKs against the real binary (over HTTP, and once more over HTTPS with a
# throwaway CA), and the shared contract check. The storage tests,
# the API integration tests and the end-to-end tests run twice: on SQLite and on PostgreSQL (a
# throwaway cluster on a loopback port, in a temporary directory, as a non-root user). Last, the
# Debian package is built with scripts/package.sh and installed, upgraded and purged here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Each step says how long the run has taken so far, to see where CI's time goes.
step() { printf '\n== %s (at %dm%02ds)\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

step "system packages"
need=()
command -v ssh-keygen >/dev/null || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v sshpass >/dev/null || need+=(sshpass)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v cc >/dev/null || need+=(build-essential)
command -v openssl >/dev/null || need+=(openssl)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v pg_dump >/dev/null || need+=(postgresql-client)
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need+=(faketime)
command -v strace >/dev/null || need+=(strace)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v man >/dev/null || need+=(man-db)
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

step "PostgreSQL for the tests"
pg_dir=$(mktemp -d /tmp/keyplane-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
pg_url=$(scripts/postgres.sh start "$pg_dir" "$pg_port")
echo "cluster at $pg_url"

step "format and lint"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

step "Rust tests"
cargo build --locked --bins
test_cmd=(cargo test)
cargo nextest --version >/dev/null 2>&1 && test_cmd=(cargo nextest run)
# Every crate's tests; the storage conformance suite runs on both backends here.
KEYPLANE_TEST_POSTGRES="$pg_url" "${test_cmd[@]}" --workspace --locked --no-fail-fast

step "Rust API integration tests on PostgreSQL"
# With nextest, the workspace's build filtered to the package: `-p keyplane-api` alone resolves
# features anew and rebuilds half the dependency tree (about two minutes here).
api_only=(-p keyplane-api)
[ "${test_cmd[0]} ${test_cmd[1]}" = "cargo nextest" ] && api_only=(--workspace -E 'package(keyplane-api)')
KEYPLANE_API_TEST_POSTGRES="$pg_url" "${test_cmd[@]}" "${api_only[@]}" --locked --no-fail-fast

export KEYPLANE_BIN="$root/target/debug/keyplane"

step "end-to-end: official Python SDKs, on SQLite"
.venv/bin/python -m pytest -q tests/e2e

step "end-to-end: official Node SDK, and the console in headless Chromium, on SQLite"
(cd tests/node && node --test)

step "end-to-end over HTTPS: official Python SDKs, the agent with a real sshd, on SQLite"
tls_dir=$(mktemp -d /tmp/keyplane-tls.XXXXXX)
trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir" "$tls_dir"' EXIT
scripts/test-certs.sh "$tls_dir"
KEYPLANE_E2E_TLS=1 KEYPLANE_E2E_TLS_DIR="$tls_dir" .venv/bin/python -m pytest -q tests/e2e

step "end-to-end over HTTPS: official Node SDK, and the console in headless Chromium, on SQLite"
(cd tests/node && KEYPLANE_E2E_TLS=1 KEYPLANE_E2E_TLS_DIR="$tls_dir" NODE_EXTRA_CA_CERTS="$tls_dir/ca.pem" node --test)

step "end-to-end: official Python SDKs, on PostgreSQL (and several servers on one database)"
KEYPLANE_E2E_POSTGRES="$pg_url" .venv/bin/python -m pytest -q tests/e2e

step "end-to-end: official Node SDK, and the console in headless Chromium, on PostgreSQL"
(cd tests/node && KEYPLANE_E2E_POSTGRES="$pg_url" node --test)

step "Debian package (SPEC section 16): build, inspect, install, upgrade, remove, purge"
# The release package, and an earlier build (the debug binary, at a lower package version) for the
# upgrade; the test installs and purges the package on this machine as root.
pkg_dir=$(mktemp -d /tmp/keyplane-pkg.XXXXXX)
trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir" "$tls_dir" "$pkg_dir"' EXIT
new_deb=$(./scripts/package.sh | tail -n 1)
cp "$new_deb" "$pkg_dir/"
new_version=$(dpkg-deb -f "$new_deb" Version)
old_deb=$(./scripts/package.sh --binary target/debug/keyplane --deb-version "${new_version}~earlier1" | tail -n 1)
cp "$old_deb" "$pkg_dir/"
KEYPLANE_PACKAGE_DEB="$pkg_dir/$(basename "$new_deb")" KEYPLANE_PACKAGE_OLD_DEB="$pkg_dir/$(basename "$old_deb")" \
  .venv/bin/python -m pytest -q tests/e2e/test_package.py

step "contract check (SPEC section 11)"
if [ -x ../shared/tools/contract-check ]; then
  # Its SDK venv goes under the repository, not the home directory.
  XDG_CACHE_HOME="$root/.cache" ../shared/tools/contract-check "$KEYPLANE_BIN"
else
  echo "../shared/tools/contract-check not found; skipped"
fi

step "all tests passed"
