#!/usr/bin/env bash
# What `make test` needs besides Python, installed from Debian's packages when missing, so that it
# needs nothing beforehand: Prometheus and promtool for the deploy tests, curl for the examples in
# README.md and docs/ (tests/integration/docs). Root installs with apt-get; anyone else through
# passwordless sudo, or is told the one command to run.
set -euo pipefail

# command -> the Debian package that provides it
declare -A package_of=([prometheus]=prometheus [promtool]=prometheus [curl]=curl)

declare -A missing=()
for command in "${!package_of[@]}"; do
    if ! command -v "$command" >/dev/null; then
        missing[${package_of[$command]}]=1
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
packages="${!missing[*]}"
if ! command -v apt-get >/dev/null; then
    echo "the tests need these packages of your system: $packages" >&2
    exit 1
fi
as_root=()
if [ "$(id -u)" != "0" ]; then
    if sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "the tests need Debian's $packages: run" \
            "'sudo apt-get install -y --no-install-recommends $packages'" >&2
        exit 1
    fi
fi
echo "installing Debian's $packages for the tests"
"${as_root[@]}" apt-get update -qq
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends $packages
