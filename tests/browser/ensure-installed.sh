#!/usr/bin/env bash
# The browser tests load the SDKs pinned in package.json (from the npm registry) into Debian's
# headless Chromium: install both when missing, so `make test` needs nothing beforehand. Root
# installs with apt-get; anyone else through passwordless sudo, or is told the command to run.
set -euo pipefail

cd "$(dirname "$0")"

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then
        echo "the browser tests need ${missing[*]}: install them with your system's packages" >&2
        exit 1
    fi
    as_root=()
    if [ "$(id -u)" != "0" ]; then
        if sudo -n true 2>/dev/null; then
            as_root=(sudo -n)
        else
            echo "the browser tests need ${missing[*]}: run" \
                "'sudo apt-get install -y --no-install-recommends ${missing[*]}'" >&2
            exit 1
        fi
    fi
    echo "installing Debian's ${missing[*]} for the browser tests"
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Installed again only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
fi
