#!/usr/bin/env bash
# Builds the Debian package of SPEC section 16: target/debian/keyplane_<version>_<arch>.deb, with
# the binary, both systemd units, both configuration files (conffiles), the man pages and the
# bash, zsh and fish completions generated from the CLI's definition. Works on a fresh Debian 12
# with the Rust toolchain: it installs what it needs (dpkg-dev, whose dpkg-shlibdeps computes
# Depends from the binary; a C compiler and binutils; cargo-deb, pinned, under target/tools).
# The last line of its output is the package's path.
#
#   ./scripts/package.sh                    the release build (what to ship)
#   ./scripts/package.sh --binary PATH      a keyplane binary built before, e.g. an earlier build
#                                           for an upgrade test (scripts/test.sh)
#   ./scripts/package.sh --deb-version V    another package version
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

CARGO_DEB_VERSION=3.8.0
binary=""
deb_version=()
while (($#)); do
  case "$1" in
    --binary) binary=$(realpath "$2"); shift 2 ;;
    --deb-version) deb_version=(--deb-version "$2"); shift 2 ;;
    *) echo "usage: $0 [--binary PATH] [--deb-version VERSION]" >&2; exit 2 ;;
  esac
done

need=()
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v cc >/dev/null && command -v strip >/dev/null || need+=(build-essential)
if ((${#need[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}" >&2
fi
cargo_deb=$root/target/tools/bin/cargo-deb
if ! "$cargo_deb" --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
  cargo install --quiet --locked --root "$root/target/tools" --version "$CARGO_DEB_VERSION" cargo-deb
fi

if [ -n "$binary" ]; then
  # cargo-deb takes the binary from <target dir>/release: a target dir of its own holds this one.
  export CARGO_TARGET_DIR=$root/target/package-staging
  rm -rf "$CARGO_TARGET_DIR"
  mkdir -p "$CARGO_TARGET_DIR/release"
  cp "$binary" "$CARGO_TARGET_DIR/release/keyplane"
  bin=$CARGO_TARGET_DIR/release/keyplane
else
  cargo build --locked --release -p keyplane
  bin=$root/target/release/keyplane
fi

# Generated from the binary that ships, so they describe exactly its flags.
assets=$(dirname "$bin")/package-assets
rm -rf "$assets"
mkdir -p "$assets/completions"
"$bin" completions bash >"$assets/completions/keyplane"
"$bin" completions zsh >"$assets/completions/_keyplane"
"$bin" completions fish >"$assets/completions/keyplane.fish"
"$bin" man "$assets/man"
gzip -9n "$assets"/man/*.1

"$cargo_deb" -p keyplane --no-build --locked "${deb_version[@]}" \
  --output "$root/target/debian/"
