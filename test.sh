#!/usr/bin/env bash
# Runs the whole test suite (Release). Extra arguments go to `dotnet test`, e.g. --filter Data.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
"$root/tools/ensure-deps.sh"
cd "$root"
dotnet build Updp.sln -c Release --nologo -v quiet
dotnet format Updp.sln --verify-no-changes --no-restore
exec dotnet test Updp.sln -c Release --no-build --nologo "$@"
