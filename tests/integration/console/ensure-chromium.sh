#!/usr/bin/env bash
# The console's browser tests drive Debian's headless Chromium (/usr/bin/chromium): install it
# when it is missing, so `make test` needs nothing beforehand. Root installs with apt-get; anyone
# else through passwordless sudo, or is told the one command to run. Does nothing when present.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "/usr/bin/chromium is needed by tests/integration/console: install your system's chromium package" >&2
    exit 1
fi
as_root=()
if [ "$(id -u)" != "0" ]; then
    if sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "/usr/bin/chromium is needed by tests/integration/console: run" \
            "'sudo apt-get install -y --no-install-recommends chromium'" >&2
        exit 1
    fi
fi
echo "installing Debian's chromium package for the console's browser tests"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium
