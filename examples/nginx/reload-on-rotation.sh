#!/bin/sh
# Reloads nginx whenever the credentials in a spire-csi volume change.
#
#   reload-on-rotation.sh [FOLDER]      FOLDER defaults to $SPIFFE_CREDENTIAL_FOLDER
#
# Environment:
#   RELOAD_COMMAND  what to run on a change (default: nginx -s reload)
#   POLL_SECONDS    longest time between checks (default 10)
#   FILES           files whose content decides "changed" (default: svid.pem svid_key.pem bundle.pem)
#
# The driver replaces all files at once by renaming `..data`; with inotifywait (inotify-tools)
# installed the script wakes up on that rename, otherwise it polls. Either way it compares file
# contents, so a missed event or a folder written without `..data` still triggers a reload.
# nginx keeps serving with its old certificates if a reload fails.
set -eu

folder=${1:-${SPIFFE_CREDENTIAL_FOLDER:-}}
if [ -z "$folder" ] || [ ! -d "$folder" ]; then
    echo "reload-on-rotation: usage: $0 FOLDER (or set SPIFFE_CREDENTIAL_FOLDER); got '${folder}'" >&2
    exit 2
fi
reload_command=${RELOAD_COMMAND:-nginx -s reload}
poll_seconds=${POLL_SECONDS:-10}
files=${FILES:-svid.pem svid_key.pem bundle.pem}

fingerprint() {
    # Through the visible names, so each check sees one `..data` generation.
    (cd "$folder" && cat $files 2>/dev/null | cksum) || true
}

wait_for_change() {
    if command -v inotifywait >/dev/null 2>&1; then
        # moved_to: the `..data` rename; close_write/create: folders written in place.
        # Exit status 2 is the timeout, which just means "check anyway".
        inotifywait -qq -t "$poll_seconds" -e moved_to -e close_write -e create "$folder" || true
    else
        sleep "$poll_seconds"
    fi
}

last=$(fingerprint)
echo "reload-on-rotation: watching $folder; on change: $reload_command"
while :; do
    wait_for_change
    current=$(fingerprint)
    [ "$current" = "$last" ] && continue
    echo "reload-on-rotation: credentials changed; running: $reload_command"
    if sh -c "$reload_command"; then
        last=$current
    else
        echo "reload-on-rotation: '$reload_command' failed; retrying on the next check" >&2
    fi
done
