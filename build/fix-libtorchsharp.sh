#!/usr/bin/env bash
# Makes TorchSharp's libLibTorchSharp.so load on Debian 12 (libstdc++ from GCC 12).
# The library asks for GLIBCXX_3.4.32 for one symbol, std::ios_base_library_init(). We patch the
# copy in a build or publish output folder (never the NuGet cache): clear that symbol's version,
# mark the version requirement weak, and add a tiny library that defines the symbol.
# Idempotent; does nothing where the system libstdc++ already has GLIBCXX_3.4.32, unless --always
# is given (packing the updp tool does that, so the package runs on Debian 12 wherever it was made;
# with a newer libstdc++ the weak requirement is met and the symbol is found there as well).
# The helpers are compiled once into $UPDP_NATIVE_CACHE (default build/.native next to this script;
# the Updp package's build targets point it at the project's obj/ folder).
# Usage: build/fix-libtorchsharp.sh [--always] OUTPUT_DIR
set -euo pipefail

always=false
if [ "${1:-}" = --always ]; then
  always=true
  shift
fi
out=${1:?usage: fix-libtorchsharp.sh [--always] OUTPUT_DIR}
lib="$out/libLibTorchSharp.so"
shim_name=libupdp_ios_init.so
here=$(cd "$(dirname "$0")" && pwd)
cache=${UPDP_NATIVE_CACHE:-"$here/.native"}

[ -f "$lib" ] || exit 0

system_libstdcxx=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {f = $NF} END {print f}')
if ! $always && [ -n "$system_libstdcxx" ] && grep -qa 'GLIBCXX_3\.4\.32' "$system_libstdcxx"; then
  exit 0
fi

need_tool() { # tool debian-package
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "fix-libtorchsharp: installing $2 (needed to patch libLibTorchSharp.so)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
  command -v "$1" >/dev/null 2>&1 || {
    echo "fix-libtorchsharp: '$1' is missing; install the Debian package '$2' (apt-get install $2) and build again" >&2
    exit 1
  }
}
need_tool patchelf patchelf
need_tool g++ g++
need_tool gcc gcc

# Build the helpers once per checkout; temp file + rename so parallel builds never see half a file.
mkdir -p "$cache"
build_once() { # target compiler args...
  local target=$1; shift
  [ -f "$target" ] && [ "$target" -nt "$here/fix-libtorchsharp.sh" ] && return 0
  local tmp; tmp=$(mktemp "$target.XXXXXX")
  "$@" -o "$tmp"
  mv -f "$tmp" "$target"
}
build_once "$cache/weaken_verneed" gcc -O2 -Wall "$here/native/weaken_verneed.c"
build_once "$cache/$shim_name" g++ -O2 -Wall -shared -fPIC "$here/native/ios_base_library_init.cpp"

cp -f "$cache/$shim_name" "$out/$shim_name"

needed=$(patchelf --print-needed "$lib")
if grep -qx "$shim_name" <<<"$needed"; then
  exit 0 # already patched
fi

# Patch a private copy and rename it over the original: never write through a hard link.
tmp=$(mktemp "$lib.XXXXXX")
cp "$lib" "$tmp"
patchelf --clear-symbol-version _ZSt21ios_base_library_initv "$tmp"
"$cache/weaken_verneed" "$tmp" GLIBCXX_3.4.32 >/dev/null
patchelf --add-needed "$shim_name" "$tmp"
chmod --reference="$lib" "$tmp"
mv -f "$tmp" "$lib"
echo "fix-libtorchsharp: patched $lib for the system libstdc++" >&2
