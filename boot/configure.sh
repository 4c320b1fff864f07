#!/usr/bin/bash
#
# Every boot of a sapi zone after the first (setup.sh did the first): make
# sure the delegated dataset is at /sapi and import the SMF service, which
# starts SAPI from zone metadata with the data it left in /sapi.
#
# Outside a zone (tests): SAPI_BOOT_ROOT is prepended to every path, and
# SAPI_BOOT_PATH replaces the command path.

export PS4='[\D{%FT%TZ}] ${BASH_SOURCE}:${LINENO}: ${FUNCNAME[0]:+${FUNCNAME[0]}(): }'
set -o xtrace

ROOT=${SAPI_BOOT_ROOT:-}
export PATH=${SAPI_BOOT_PATH:-/usr/bin:/usr/sbin:/opt/local/bin:/opt/local/sbin}
PREFIX=/opt/smartdc/sapi
SAPI_ROOT=/sapi

ZONE_DATASET=zones/$(zonename)/data
if zfs list "$ZONE_DATASET" >/dev/null 2>&1; then
    if [[ $(zfs get -H -o value mountpoint "$ZONE_DATASET") != "$SAPI_ROOT" ]]; then
        zfs set mountpoint="$SAPI_ROOT" "$ZONE_DATASET"
    fi
fi

echo "Importing the sapi SMF service"
svccfg import "$ROOT$PREFIX/smf/manifests/sapi.xml" || exit 1

exit 0
