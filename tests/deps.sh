#!/bin/sh
# deps.sh check|install PKG...: makes sure the Debian -dev packages we build
# against are present; "check" installs only when a header is missing.
mode=$1; shift
missing=""
for p in "$@"; do
    case $p in
        libzstd-dev)     h=/usr/include/zstd.h ;;
        libcjson-dev)    h=/usr/include/cjson/cJSON.h ;;
        libopenblas-dev) h=/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ;;
        libpcre2-dev)    h=/usr/include/pcre2.h ;;
        libutf8proc-dev) h=/usr/include/utf8proc.h ;;
        zlib1g-dev)      h=/usr/include/zlib.h ;;
        libcmocka-dev)   h=/usr/include/cmocka.h ;;
        *)               h="" ;;
    esac
    if [ -n "$h" ] && [ -f "$h" ] && [ "$mode" = check ]; then continue; fi
    if [ -z "$h" ] || [ ! -f "$h" ] || ! dpkg -s "$p" >/dev/null 2>&1; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q $missing >&2 || {
    $SUDO apt-get update -q >&2 && $SUDO apt-get install -y -q $missing >&2
} || { echo "deps: cannot install$missing (run as root, or install them by hand)" >&2; exit 1; }
