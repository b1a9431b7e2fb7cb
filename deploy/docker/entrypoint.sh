#!/bin/sh
# The image's entry point: `<service> [migrate]` runs python -m services.<service>; any other
# command runs as given. exec, so the service is PID 1 and receives SIGTERM itself.
set -eu

usage() {
    services=$(cd /app/services && ls -d */ | tr -d / | grep -v '^_' | tr '\n' ' ')
    echo "usage: <service> [migrate] | <command> [args...]" >&2
    echo "services: $services" >&2
}

if [ "$#" -eq 0 ] || [ "$1" = "--help" ]; then
    usage
    exit 2
fi
if [ -f "/app/services/$1/__main__.py" ]; then
    service="$1"
    shift
    exec python -m "services.$service" "$@"
fi
exec "$@"
