#!/usr/bin/env bash
# Install the node tools the Azure ML test harness runs, into a cache outside the repository:
#
#   ${AMLOPS_NODE_CACHE:-$HOME/.cache/amlops/node}/
#       azurite-3.35.0/node_modules/.bin/azurite-blob   (Microsoft's storage emulator)
#       oav-4.0.3/node_modules/.bin/oav                 (Microsoft's OpenAPI traffic validator)
#
# Pinned: azurite 3.36+ needs a newer node than node 20; oav 4.0.3 runs on node 20.
# Idempotent: a tool counts as installed when its stamp file exists; each install goes into a
# temporary directory that is moved into place only once it works, so an interrupted run leaves
# nothing half-installed. Concurrent runs serialize on a lock file. Progress goes to stderr;
# stdout gets one line, the cache directory.
#
# Without node/npm nothing is installed and the script exits 0 with a note: the tests that need
# the tools skip with that reason.
set -euo pipefail

AZURITE_VERSION="${AMLOPS_AZURITE_VERSION:-3.35.0}"
OAV_VERSION="${AMLOPS_OAV_VERSION:-4.0.3}"
CACHE_ROOT="${AMLOPS_NODE_CACHE:-${HOME}/.cache/amlops/node}"

log() { printf '[azure-tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "node/npm not found: skipping azurite and oav (the tests that need them will skip)"
    printf '%s\n' "${CACHE_ROOT}"
    exit 0
fi

mkdir -p "${CACHE_ROOT}"
exec 9>"${CACHE_ROOT}/.install.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
    log "another install is running; waiting for ${CACHE_ROOT}/.install.lock"
    flock 9
fi

TMP_DIRS=()
cleanup() {
    local d
    for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do rm -rf -- "$d"; done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# install NAME VERSION BIN: npm-install NAME@VERSION into CACHE_ROOT/NAME-VERSION
install_tool() {
    local name="$1" version="$2" bin="$3"
    local dest="${CACHE_ROOT}/${name}-${version}"
    if [[ -f "${dest}/.installed" && -x "${dest}/node_modules/.bin/${bin}" ]]; then
        log "${name}@${version}: cached in ${dest}"
        return 0
    fi
    local tmp="${CACHE_ROOT}/.${name}-${version}.tmp.$$"
    local start
    start=$(date +%s)
    TMP_DIRS+=("${tmp}")
    rm -rf -- "${tmp}"
    mkdir -p "${tmp}"
    printf '{"name":"amlops-%s","private":true}\n' "${name}" >"${tmp}/package.json"
    log "${name}@${version}: npm install into ${dest} (node $(node --version))"
    (cd "${tmp}" && npm install --no-audit --no-fund --omit=dev --loglevel=error \
        "${name}@${version}") >&2 || die "npm install ${name}@${version} failed"
    [[ -x "${tmp}/node_modules/.bin/${bin}" ]] || die "${name}: ${bin} missing after install"
    touch "${tmp}/.installed"
    rm -rf -- "${dest}"
    mv -- "${tmp}" "${dest}"
    log "${name}@${version}: installed in $(( $(date +%s) - start ))s"
}

install_tool azurite "${AZURITE_VERSION}" azurite-blob
install_tool oav "${OAV_VERSION}" oav
printf '%s\n' "${CACHE_ROOT}"
