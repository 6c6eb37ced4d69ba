#!/usr/bin/env bash
# Tools only the test suite needs beyond the `test` extra: Debian's chromium for the browser test of the chat page.
# Playwright drives it through executable_path; `playwright install` (a browser download) is never used.
# Without root or apt the browser test skips and says why.
set -uo pipefail
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "note: could not install chromium; the browser test will be skipped"
fi
exit 0
