#!/bin/sh
# Prometheus's entrypoint in docker-compose: it reads a bearer token only from its
# configuration or a file, never from the environment, so the operator key compose passes in
# is written to PROMETHEUS_API_KEY_FILE (a tmpfs, gone with the container) before it starts.
set -eu
: "${PROMETHEUS_API_KEY:?set PROMETHEUS_API_KEY: an operator key of API_KEYS}"
: "${PROMETHEUS_API_KEY_FILE:?set PROMETHEUS_API_KEY_FILE}"
umask 077
printf '%s' "$PROMETHEUS_API_KEY" > "$PROMETHEUS_API_KEY_FILE"
unset PROMETHEUS_API_KEY  # not in the environment of Prometheus itself
exec prometheus "$@"
