#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it.
#   bash tools/test.sh [pytest args...]
# Debian packages (needs root or sudo): real peers and build tools for the tests.
# npm: the MicroPython 1.27 WebAssembly build the portable tests run under, and Prism
#      (OpenAPI mock server) for the OpenADR 3 contract tests.
# pip: the project with its [test] extra (pytest-xdist runs the files on two workers).
# MicroPython: the unix port built 32-bit from ../shared/vendor (or $MPY_DIR), cached in
# ~/.cache/spot-micropython (tests/mp_real.py); without a source its tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="mosquitto mosquitto-clients libcoap3-bin prosody autoconf automake libtool pkg-config postgresql chromium chromium-driver tshark gcc-multilib make"
APT_PACKAGES="$APT_PACKAGES openssl"   # gridappsd-2030-5 (IEEE 2030.5 tests) makes its certificates with it

missing=""
for p in $APT_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "== installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

echo "== installing npm packages (MicroPython for the portable tests)"
npm ci --prefix tests/micropython --no-audit --no-fund --loglevel=error
echo "== installing npm packages (Prism, the OpenADR 3 contract tests' validating mock)"
npm ci --prefix tests/openadr3 --no-audit --no-fund --loglevel=error

echo "== installing the project with its test extra"
python3 -m pip install -q --disable-pip-version-check -e ".[test]"

echo "== installing gridappsd-2030-5 (the IEEE 2030.5 test server; own Python 3.10 venv, cached)"
python3 tests/ieee2030_5_peer.py --install

echo "== building MicroPython 32-bit (unix port) for the real-interpreter tests (cached)"
python3 tests/mp_real.py build

echo "== running the tests (two workers, one file at a time each)"
exec python3 -m pytest -n 2 --dist loadfile "$@"
