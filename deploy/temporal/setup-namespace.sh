#!/bin/sh
# Once the server answers: the namespace and ordermill's search attributes, which every order
# is started with (the API refuses to start orders without them). Idempotent: anything that
# exists already is left alone. Runs in the temporalio/admin-tools image.
set -eu
: "${TEMPORAL_ADDRESS:?}" "${TEMPORAL_NAMESPACE:=default}"

# Retry a command for up to a minute: a new server, or a namespace created a moment ago, takes
# a few seconds to answer everywhere.
retry() {
    tries=0
    until "$@"; do
        tries=$((tries + 1))
        [ "$tries" -lt 30 ] || { echo "init: giving up on: $*" >&2; exit 1; }
        sleep 2
    done
}

retry temporal operator cluster health
if ! temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; then
    echo "init: creating namespace $TEMPORAL_NAMESPACE"
    retry temporal operator namespace create --namespace "$TEMPORAL_NAMESPACE" --retention 7d
fi

# name:type of each search attribute models/wire.py declares (tests/test_compose.py checks).
for attribute in OrderStatus:Keyword CustomerId:Keyword OrderHolds:KeywordList; do
    name=${attribute%%:*}
    type=${attribute#*:}
    if temporal operator search-attribute list --namespace "$TEMPORAL_NAMESPACE" \
        | grep -qw "$name"; then
        echo "init: search attribute $name exists"
    else
        echo "init: registering search attribute $name ($type)"
        retry temporal operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" \
            --name "$name" --type "$type"
    fi
done
echo "init: namespace $TEMPORAL_NAMESPACE ready"
