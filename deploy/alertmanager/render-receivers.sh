#!/bin/sh
# Render alertmanager.yml with the receivers' webhook URLs taken from the environment,
# then (optionally) exec Alertmanager: Alertmanager itself expands no variables.
#
#   render-receivers.sh IN OUT [COMMAND ARG...]
#
#   EXAI_ALERT_PAGE_WEBHOOK_URL    URL of the `page` receiver
#   EXAI_ALERT_TICKET_WEBHOOK_URL  URL of the `ticket` receiver
#   EXAI_ALERT_INFO_WEBHOOK_URL    URL of the `info` receiver (the Watchdog heartbeat)
#   EXAI_ALERT_WEBHOOK_URL         URL of every receiver not named above
#
# Unset or empty, a receiver keeps the URL of IN (http://127.0.0.1:9095/alerts, the
# alert-webhook logger). Only the `url:` lines under `receivers:` change, so OUT is IN
# with the chosen URLs and passes `amtool check-config` whenever the URLs are valid;
# Alertmanager refuses to start on a malformed one. OUT is written with mode 0600: a
# webhook URL often carries a credential.
#
# POSIX sh and awk only: compose runs it in the Alertmanager image (busybox), the no-Docker
# stack (deploy/local-stack/stack.py) on the host.
set -eu

if [ "$#" -lt 2 ]; then
    echo "usage: $0 IN OUT [COMMAND ARG...]" >&2
    exit 2
fi
in=$1
out=$2
shift 2

for variable in EXAI_ALERT_WEBHOOK_URL EXAI_ALERT_PAGE_WEBHOOK_URL \
    EXAI_ALERT_TICKET_WEBHOOK_URL EXAI_ALERT_INFO_WEBHOOK_URL; do
    eval "value=\${$variable:-}"
    # Written into a double-quoted YAML string: refuse what would need escaping there
    # (a URL has no business containing it unencoded).
    case $value in
    *'"'* | *'\'* | *'
'*)
        echo "$0: $variable contains a quote, backslash or newline: not a URL" >&2
        exit 1
        ;;
    esac
done

umask 077
awk '
    /^[^ #]/ { in_receivers = ($0 ~ /^receivers:/) }
    in_receivers && /^  - name: / { receiver = $3 }
    in_receivers && receiver != "" && /^ +(- )?url: / {
        url = ENVIRON["EXAI_ALERT_" toupper(receiver) "_WEBHOOK_URL"]
        if (url == "") url = ENVIRON["EXAI_ALERT_WEBHOOK_URL"]
        # Printed, not substituted: "&" in a replacement would stand for the match.
        if (url != "") {
            match($0, /^ +(- )?/)
            print substr($0, 1, RLENGTH) "url: \"" url "\""
            next
        }
    }
    { print }
' "$in" >"$out.tmp"
mv "$out.tmp" "$out"

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
