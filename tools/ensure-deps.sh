#!/usr/bin/env bash
# Installs what Updp needs from Debian's packages when it is missing (as root), or says what to
# install. Called by ./updp and ./test.sh before they build.
set -euo pipefail

missing=()
command -v patchelf >/dev/null 2>&1 || missing+=(patchelf)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || [ -n "${UPDP_DATA:-}" ] || missing+=(dataset-fashion-mnist)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "updp: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    echo "updp: missing Debian packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

command -v dotnet >/dev/null 2>&1 || { echo "updp: the .NET 10 SDK (dotnet) is not on PATH" >&2; exit 1; }
