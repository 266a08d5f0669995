#!/usr/bin/env bash
# Chromium and its WebDriver for the console's browser tests (tests/it/console.rs),
# from Debian's packages, installed only when missing. .ci/run calls it and sets
# WALHOOK_REQUIRE_BROWSER=1, so a browser test never skips in CI.
set -euo pipefail

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi
chromium --version
chromedriver --version
