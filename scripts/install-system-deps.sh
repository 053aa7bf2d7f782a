#!/usr/bin/env bash
# Debian packages the sandbox and the offscreen renderer need. Skipped when already present.
set -euo pipefail
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v setpriv >/dev/null || missing+=(util-linux)
dpkg -s libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libosmesa6 >/dev/null 2>&1 \
    || missing+=(libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libosmesa6)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-system-deps: missing ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
        echo "install-system-deps: continuing; the sandbox falls back as docs/sandbox.md describes" >&2
        exit 0
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
