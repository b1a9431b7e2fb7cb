#!/usr/bin/env bash
# The deploy tests run a real Prometheus and promtool (Debian's `prometheus` package): install it
# when it is missing, so `make test` needs nothing beforehand. Root installs with apt-get; anyone
# else through passwordless sudo, or is told the one command to run.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "prometheus and promtool are needed by tests/*/deploy: install your system's prometheus package" >&2
    exit 1
fi
as_root=()
if [ "$(id -u)" != "0" ]; then
    if sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "prometheus and promtool are needed by tests/*/deploy: run" \
            "'sudo apt-get install -y --no-install-recommends prometheus'" >&2
        exit 1
    fi
fi
echo "installing Debian's prometheus package for the deploy tests"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends prometheus
