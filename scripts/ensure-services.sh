#!/usr/bin/env bash
# Make sure what `make` needs from Debian is installed.
#
#   scripts/ensure-services.sh                      PostgreSQL server binaries and redis-server,
#                                                   which the integration tests start themselves
#   scripts/ensure-services.sh --python-venv PY     `PY -m venv` works (Debian ships it separately)
#
# Missing packages are installed with apt-get, through sudo when not root. Present ones cost
# nothing, so `make test` runs this every time.
set -euo pipefail

apt_install() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "ensure-services: need root or sudo to install: $*" >&2; exit 1; }
        sudo=(sudo)
    fi
    echo "ensure-services: installing $*" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

stop_service() {
    # The packages start system-wide servers on 5432 and 6379; the tests start throwaway ones,
    # so those would only take memory (and the ports). A failure here changes nothing for us.
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        "${sudo[@]}" systemctl stop "$1" >/dev/null 2>&1 || true
    elif command -v service >/dev/null; then
        "${sudo[@]}" service "$1" stop >/dev/null 2>&1 || true
    fi
}

pg_bin_dir() {
    # PATH first, then Debian's versioned directories, newest version first.
    local tool dir
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null && command -v postgres >/dev/null; then
        dirname "$(command -v postgres)"
        return 0
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        for tool in initdb pg_ctl postgres; do
            [ -x "$dir/$tool" ] || continue 2
        done
        echo "$dir"
        return 0
    done
    return 1
}

ensure_python_venv() {
    local python="$1" version
    "$python" -c 'import ensurepip, venv' 2>/dev/null && return 0
    version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    apt_install "python${version}-venv"
}

ensure_services() {
    local missing=() pg
    pg_bin_dir >/dev/null || missing+=(postgresql)
    command -v redis-server >/dev/null || missing+=(redis-server)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
        # Only what we just installed: a server the machine already ran is someone's.
        for pkg in "${missing[@]}"; do stop_service "$pkg"; done
    fi
    pg="$(pg_bin_dir)" || { echo "ensure-services: PostgreSQL binaries still missing" >&2; exit 1; }
    command -v redis-server >/dev/null || { echo "ensure-services: redis-server still missing" >&2; exit 1; }
    echo "ensure-services: postgres in $pg, redis-server at $(command -v redis-server)"
}

case "${1:-}" in
    --python-venv) ensure_python_venv "${2:-python3}" ;;
    "") ensure_services ;;
    *) echo "usage: $0 [--python-venv PYTHON]" >&2; exit 2 ;;
esac
