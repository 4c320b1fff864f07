#!/usr/bin/bash
#
# First boot of a sapi zone (run by the zone's user-script; later boots run
# configure.sh). In the order SAPI needs:
#
#   1. the delegated dataset mounted at /sapi (SAPI's embedded store: proto
#      mode's data, full mode's local cache);
#   2. a DNS domain in the metadata the server reads at start
#      (sdc:dns_domain; else dns_domain, which this script derives, when it
#      must, from usbkey_config or, in a sapiNtmp zone, from sapi-url);
#   3. the SMF service imported, which starts SAPI from zone metadata alone
#      (SAPI cannot wait for config-agent: config-agent needs a SAPI);
#   4. sapi-url pointing at this zone's own admin IP, so the common setup
#      (config-agent, registrar, amon) talks to this SAPI and no other;
#   5. sdc-scripts' common setup, log rotation, and sapiadm on root's PATH.
#
# Outside a zone (tests): SAPI_BOOT_ROOT is prepended to every path this
# script writes or reads, and SAPI_BOOT_PATH replaces the command path.

export PS4='[\D{%FT%TZ}] ${BASH_SOURCE}:${LINENO}: ${FUNCNAME[0]:+${FUNCNAME[0]}(): }'
set -o xtrace
set -o pipefail

ROOT=${SAPI_BOOT_ROOT:-}
export PATH=${SAPI_BOOT_PATH:-/usr/bin:/usr/sbin:/opt/local/bin:/opt/local/sbin}
PREFIX=/opt/smartdc/sapi
NODE=$ROOT$PREFIX/build/node/bin/node
SAPI_ROOT=/sapi
METRICS_PORT=8881
role=sapi

# fatal, warn and sdc_* come from sdc-scripts.
source "$ROOT/opt/smartdc/boot/lib/util.sh"

# The value of a metadata key, empty when there is none.
function md
{
    mdata-get "$1" 2>/dev/null || true
}

# GET a SAPI URL (a few tries: the other SAPI may be restarting).
function sapi_get
{
    local url=$1
    local try
    for try in 1 2 3; do
        if curl -sSf -H 'Accept: application/json' -H 'Accept-Version: ~1' "$url"; then
            return 0
        fi
        echo "could not get $url: retrying" >&2
        sleep 3
    done
    return 1
}

# ---- mainline

# The cookie that says this is a Triton zone of role sapi.
mkdir -p "$ROOT/var/smartdc/$role"

# 1. The delegated dataset, if the zone has one, is mounted at /sapi.
ZONE_UUID=$(zonename)
ZONE_DATASET=zones/$ZONE_UUID/data
if zfs list "$ZONE_DATASET" >/dev/null 2>&1; then
    mountpoint=$(zfs get -H -o value mountpoint "$ZONE_DATASET")
    if [[ $mountpoint != "$SAPI_ROOT" ]]; then
        zfs set mountpoint="$SAPI_ROOT" "$ZONE_DATASET" || fatal "cannot mount $ZONE_DATASET at $SAPI_ROOT"
    fi
fi
mkdir -p "$ROOT$SAPI_ROOT"

# cmon-agent finds SAPI's metrics through this.
mdata-put metricPorts "$METRICS_PORT"

# 2. The DNS domain.
DNS_DOMAIN=
VM_DNS_DOMAIN=$(md sdc:dns_domain)
MD_DNS_DOMAIN=$(md dns_domain)
if [[ -n $VM_DNS_DOMAIN && $VM_DNS_DOMAIN != local ]]; then
    echo "dns_domain: $VM_DNS_DOMAIN (set on the VM)"
    DNS_DOMAIN=$VM_DNS_DOMAIN
    # One source of truth: drop the customer-metadata copy.
    if [[ -n $MD_DNS_DOMAIN ]]; then
        mdata-delete dns_domain || warn "could not delete the dns_domain metadata"
    fi
elif [[ -n $MD_DNS_DOMAIN ]]; then
    echo "dns_domain: $MD_DNS_DOMAIN (customer metadata)"
    DNS_DOMAIN=$MD_DNS_DOMAIN
fi
if [[ -z $DNS_DOMAIN ]]; then
    # Headnode setup hands the first SAPI a copy of the USB key's config.
    DNS_DOMAIN=$(md usbkey_config | sed -n 's/^dns_domain=//p' | head -1)
    if [[ -n $DNS_DOMAIN ]]; then
        echo "dns_domain: $DNS_DOMAIN (from usbkey_config)"
        mdata-put dns_domain "$DNS_DOMAIN"
    fi
fi
if [[ -z $DNS_DOMAIN ]]; then
    # An old sdcadm upgraded SAPI through a temporary zone (alias sapiNtmp)
    # and told it the running SAPI's URL.
    alias=$(md sdc:alias)
    sapi_url=$(md sapi-url)
    if [[ ${alias: -3} == tmp && -n $sapi_url ]]; then
        DNS_DOMAIN=$(sapi_get "$sapi_url/applications?name=sdc" |
            "$NODE" -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => { const a = JSON.parse(s || "[]"); process.stdout.write(String(a[0]?.metadata?.dns_domain ?? "")); });' || true)
        if [[ -n $DNS_DOMAIN ]]; then
            echo "dns_domain: $DNS_DOMAIN (from $sapi_url)"
            mdata-put dns_domain "$DNS_DOMAIN"
        fi
    fi
fi
[[ -n $DNS_DOMAIN ]] || fatal "could not determine the DNS domain (sdc:dns_domain, dns_domain, usbkey_config)"

# 3. Start SAPI.
echo "Importing the sapi SMF service (it starts SAPI)"
svccfg import "$ROOT$PREFIX/smf/manifests/sapi.xml" || fatal "cannot import the sapi SMF manifest"

# 4. The common setup talks to this SAPI, by IP (it is not in DNS yet).
ADMIN_IP=$(md sdc:nics | "$NODE" -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => { const n = JSON.parse(s || "[]").find((x) => x.nic_tag === "admin"); process.stdout.write(n?.ip ?? ""); });')
[[ -n $ADMIN_IP ]] || fatal "no NIC tagged admin in sdc:nics"
mdata-put sapi-url "http://$ADMIN_IP"

# 5. sdc-scripts' common setup. Its metadata download retries while SAPI
# is still starting. (It behaves differently in proto mode: a new headnode.)
CONFIG_AGENT_LOCAL_MANIFESTS_DIRS=$PREFIX
SAPI_PROTO_MODE=$(md SAPI_PROTO_MODE)
export CONFIG_AGENT_LOCAL_MANIFESTS_DIRS SAPI_PROTO_MODE
sdc_common_setup

echo "Adding log rotation"
sdc_log_rotation_add amon-agent /var/svc/log/*amon-agent*.log 1g
sdc_log_rotation_add config-agent /var/svc/log/*config-agent*.log 1g
sdc_log_rotation_add registrar /var/svc/log/*registrar*.log 1g
sdc_log_rotation_add $role /var/svc/log/*$role*.log 1g
sdc_log_rotation_setup_end

# sapiadm (and the shipped node) on root's PATH, for login and other shells.
mkdir -p "$ROOT/root"
for rc in "$ROOT/root/.profile" "$ROOT/root/.bashrc"; do
    if ! grep -q "$PREFIX/bin" "$rc" 2>/dev/null; then
        echo "export PATH=\$PATH:$PREFIX/bin:$PREFIX/build/node/bin" >>"$rc"
    fi
done

sdc_setup_complete

exit 0
