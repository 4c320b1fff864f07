#!/bin/bash
#
# Build the sapi image's package: sapi-pkg-<stamp>.tar.gz, in the layout a
# Triton core image is built from (root/ is unpacked over the zone's /):
#
#   root/opt/smartdc/sapi/
#       build/node/          the node that runs SAPI (bin/node)
#       dist/                the compiled server (bundled) and sapiadm
#       node_modules/        production dependencies only
#       bin/sapiadm          sapiadm, run by build/node (on root's PATH)
#       package.json, smf/manifests/sapi.xml, sapi_manifests/, etc/
#   root/opt/smartdc/boot/   setup.sh, configure.sh, and sdc-scripts
#                            (lib/util.sh and the rest of its tree)
#   site/                    empty, as every Triton package has it
#
# Usage: tools/release.sh [--out DIR] [--stamp STAMP] [--work DIR]
#   --out DIR     where the tarball goes (default: the repository root)
#   --stamp S     the tarball's stamp (default: <branch>-<UTC time>-g<commit>)
#   --work DIR    the staging directory (default: build/service; emptied first)
# Environment:
#   NODE_INSTALL            a directory with bin/node to ship as build/node
#                           (Triton's name for the node install; default:
#                           the node this script runs with, bin/node only)
#   NODE_PREBUILT_TARBALL   an sdcnode tarball (holding node/bin/node) to
#                           unpack as build/node instead
#   SDC_SCRIPTS_DIR         a checkout of sdc-scripts (default deps/sdc-scripts;
#                           when neither exists it is cloned there from
#                           SDC_SCRIPTS_REPO at SDC_SCRIPTS_REF)
#
# dist/ must be built (npm run build). The production dependencies are the
# ones installed here, pruned of development packages: on a SmartOS build
# zone, `npm ci` there compiles the native module (better-sqlite3) for the
# zone, which is what the image needs.

set -o errexit
set -o pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
OUT=$TOP
WORK=$TOP/build/service
STAMP=
while [[ $# -gt 0 ]]; do
    case $1 in
    --out) OUT=$2; shift 2 ;;
    --stamp) STAMP=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    *) echo "release: unknown argument $1 (usage: tools/release.sh [--out DIR] [--stamp STAMP] [--work DIR])" >&2; exit 2 ;;
    esac
done

fatal() {
    echo "release: $*" >&2
    exit 1
}

if [[ -z $STAMP ]]; then
    branch=$(git -C "$TOP" rev-parse --abbrev-ref HEAD 2>/dev/null | tr '/' '-' || true)
    commit=$(git -C "$TOP" describe --all --long --dirty 2>/dev/null | awk -F'-g' '{print $NF}' || true)
    STAMP=${branch:-release}-$(date -u +%Y%m%dT%H%M%SZ)${commit:+-g$commit}
fi
TARBALL=$OUT/sapi-pkg-$STAMP.tar.gz

[[ -f $TOP/dist/server/sapi.js && -f $TOP/dist/bin/sapiadm.js ]] || fatal "dist/ is not built: run 'npm run build' first"
[[ -d $TOP/node_modules ]] || fatal "node_modules is missing: run 'npm ci' first"

# sdc-scripts: the shared boot library of Triton core zones.
SDC_SCRIPTS_DIR=${SDC_SCRIPTS_DIR:-$TOP/deps/sdc-scripts}
if [[ ! -f $SDC_SCRIPTS_DIR/lib/util.sh ]]; then
    [[ $SDC_SCRIPTS_DIR == "$TOP/deps/sdc-scripts" ]] || fatal "SDC_SCRIPTS_DIR=$SDC_SCRIPTS_DIR has no lib/util.sh"
    repo=${SDC_SCRIPTS_REPO:-https://github.com/TritonDataCenter/sdc-scripts.git}
    ref=${SDC_SCRIPTS_REF:-master}
    echo "release: cloning sdc-scripts ($repo $ref) into deps/sdc-scripts"
    rm -rf "$TOP/deps/sdc-scripts"
    git clone --quiet "$repo" "$TOP/deps/sdc-scripts" && git -C "$TOP/deps/sdc-scripts" checkout --quiet "$ref" ||
        fatal "cannot get sdc-scripts from $repo; set SDC_SCRIPTS_DIR to a checkout of it"
fi

INST=$WORK/root/opt/smartdc/sapi
BOOT=$WORK/root/opt/smartdc/boot
rm -rf "$WORK"
mkdir -p "$INST/build" "$INST/smf/manifests" "$INST/etc" "$INST/bin" "$BOOT" "$WORK/site"
touch "$WORK/site/.do-not-delete-me"

# The server and sapiadm: everything dist/ holds but the tests, benches and build tools.
mkdir -p "$INST/dist"
cp -R "$TOP/dist/bin" "$TOP/dist/lib" "$TOP/dist/schemas" "$TOP/dist/server" "$INST/dist/"
cp "$TOP/package.json" "$TOP/package-lock.json" "$INST/"
cp "$TOP/smf/manifests/sapi.xml" "$INST/smf/manifests/"
cp -R "$TOP/sapi_manifests" "$INST/"
cp "$TOP/bin/sapiadm" "$INST/bin/sapiadm"
chmod 755 "$INST/bin/sapiadm" "$INST/dist/bin/sapi.js" "$INST/dist/bin/sapiadm.js"

# Production dependencies: the installed packages npm counts as such
# (each copied once, with what is nested in it), then without what only a
# compiler needs.
deps=$(cd "$TOP" && npm ls --omit=dev --all --parseable 2>/dev/null | sed -n "s|^$TOP/||p" | grep '^node_modules/' | sort |
    awk 'kept == "" || index($0, kept "/") != 1 { print; kept = $0 }') || fatal "npm ls cannot list the production dependencies"
[[ -n $deps ]] || fatal "no production dependencies found under node_modules"
# shellcheck disable=SC2086 # one path a line, none with spaces
(cd "$TOP" && tar -cf - $deps) | (cd "$INST" && tar -xf -)
rm -rf "$INST/node_modules/better-sqlite3/deps" "$INST/node_modules/better-sqlite3/src" \
    "$INST/node_modules/better-sqlite3/build/Release/obj" "$INST/node_modules/better-sqlite3/build/Release/obj.target" \
    "$INST/node_modules/better-sqlite3/build/Release/test_extension.node" "$INST/node_modules/better-sqlite3/build/deps"
rm -f "$INST/node_modules/.package-lock.json"

# build/node
if [[ -n $NODE_PREBUILT_TARBALL ]]; then
    tar -xzf "$NODE_PREBUILT_TARBALL" -C "$INST/build"
    [[ -x $INST/build/node/bin/node ]] || fatal "$NODE_PREBUILT_TARBALL holds no node/bin/node"
elif [[ -n $NODE_INSTALL ]]; then
    [[ -x $NODE_INSTALL/bin/node ]] || fatal "NODE_INSTALL=$NODE_INSTALL has no bin/node"
    cp -PR "$NODE_INSTALL" "$INST/build/node"
else
    mkdir -p "$INST/build/node/bin"
    cp "$(command -v node)" "$INST/build/node/bin/node"
fi

# Boot scripts: sdc-scripts' tree, then ours beside its lib/.
cp -R "$SDC_SCRIPTS_DIR/." "$BOOT/"
rm -rf "$BOOT/.git"
cp "$TOP/boot/setup.sh" "$TOP/boot/configure.sh" "$BOOT/"
chmod 755 "$BOOT/setup.sh" "$BOOT/configure.sh"

mkdir -p "$OUT"
(cd "$WORK" && tar -czf "$TARBALL" root site)
echo "$TARBALL"
