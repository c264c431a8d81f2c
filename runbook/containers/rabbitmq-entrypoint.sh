#!/bin/bash
# RabbitMQ entrypoint of compose.yaml (image rabbitmq:3.10-management). broker-config's
# definitions.json lists the broker users without password hashes; this renders a copy with a
# salted SHA-256 hash of each user's password, taken from AMQP_<USER>_PASSWORD (the names the
# launcher uses: AMQP_ADMIN_PASSWORD, AMQP_STOREFRONT_PASSWORD, ...), makes admin the node's
# default user (so no guest account is ever created), then runs the image's own entrypoint.
#
#   rabbitmq-entrypoint.sh rabbitmq-server       render to /etc/rabbitmq, then start the node
#   rabbitmq-entrypoint.sh --render SRC DST      only render, e.g. for a broker run elsewhere
#                                                (rabbitmqctl import_definitions DST)
#
# Needs bash, awk and openssl (all in the rabbitmq image). Use passwords without spaces, quotes
# or '#' (openssl rand -hex 16 makes good ones): they also go into URLs and rabbitmq.conf.
set -euo pipefail

TEMPLATE=${PETSTORE_DEFINITIONS_TEMPLATE:-/petstore/definitions.json}
DEFINITIONS=/etc/rabbitmq/definitions.json # rabbitmq.conf's load_definitions
DEFAULT_USER_CONF=/etc/rabbitmq/conf.d/90-petstore-default-user.conf

die() { echo "rabbitmq-entrypoint: $*" >&2; exit 1; }

# hash_password PASSWORD: base64(salt ‖ sha256(salt ‖ password)) with a 4-byte random salt, as
# rabbit_password_hashing_sha256 computes it (the launcher's rmq_render does the same).
hash_password() {
    local t
    t=$(mktemp -d)
    openssl rand 4 >"$t/salt"
    { cat "$t/salt"; printf '%s' "$1"; } | openssl dgst -sha256 -binary >"$t/digest"
    cat "$t/salt" "$t/digest" | openssl base64 -A
    rm -rf "$t"
}

# The user names of the template's "users" array (one key per line, as the file is written).
template_users() {
    awk '/"users": *\[/ { u = 1; next }
         u && /^ *\]/ { exit }
         u && /"name":/ { sub(/.*"name": *"/, ""); sub(/".*/, ""); print }' "$1"
}

render() { # render SRC DST
    local src=$1 dst=$2 user var hashes="" n=0
    [ -r "$src" ] || die "cannot read the definitions template $src"
    for user in $(template_users "$src"); do
        var=AMQP_${user^^}_PASSWORD
        [ -n "${!var:-}" ] || die "$var is not set: the password of broker user $user"
        hashes="$hashes $user=$(hash_password "${!var}")"
        n=$((n + 1))
    done
    [ "$n" -gt 0 ] || die "no users found in $src (expected one \"name\" per line in \"users\")"
    (
        umask 077
        awk -v hashes="$hashes" '
            BEGIN { n = split(hashes, kv, " "); for (i = 1; i <= n; i++) {
                        eq = index(kv[i], "="); h[substr(kv[i], 1, eq - 1)] = substr(kv[i], eq + 1) } }
            /"users": *\[/ { u = 1 }
            u && /^ *\]/ { u = 0 }
            u && /"name":/ { name = $0; sub(/.*"name": *"/, "", name); sub(/".*/, "", name) }
            u && /"password_hash": *""/ { sub(/"password_hash": *""/, "\"password_hash\": \"" h[name] "\"") }
            { print }' "$src" >"$dst.tmp"
    )
    if grep -q '"password_hash": *""' "$dst.tmp"; then
        rm -f "$dst.tmp"
        die "a user of $src is left without a password hash"
    fi
    mv "$dst.tmp" "$dst"
    echo "rabbitmq-entrypoint: rendered $n users' password hashes into $dst" >&2
}

if [ "${1:-}" = --render ]; then
    [ $# -eq 3 ] || die "usage: $0 --render SRC DST"
    render "$2" "$3"
    exit 0
fi

render "$TEMPLATE" "$DEFINITIONS"
# The node creates its default user on an empty database; without this it would be guest/guest,
# reachable from the network in this image (its conf.d/10-defaults.conf allows that).
(
    umask 077
    printf 'default_user = admin\ndefault_pass = %s\ndefault_vhost = petstore\n' \
        "${AMQP_ADMIN_PASSWORD:?AMQP_ADMIN_PASSWORD is not set}" >"$DEFAULT_USER_CONF"
)
if [ "$(id -u)" = 0 ]; then
    chown rabbitmq:rabbitmq "$DEFINITIONS" "$DEFAULT_USER_CONF"
fi
exec docker-entrypoint.sh "$@"
