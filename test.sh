#!/usr/bin/env bash
# Runs the whole test suite (Release). Extra arguments go to `dotnet test`, e.g. --filter Data; with
# them the package check (about half a minute) is left out.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
"$root/tools/ensure-deps.sh"
cd "$root"
dotnet build Updp.sln -c Release --nologo -v quiet
dotnet format Updp.sln --verify-no-changes --no-restore
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The library sample on a PyTorch-written timm state dict: merge two blocks, export, run in ONNX Runtime.
dotnet run --project samples/PruneAndExport -c Release --no-build -- \
  tests/Updp.Tests/Fixtures/convnext_atto_linear.pt convnext_atto 4,9 "$tmp/pruned.onnx" 32
if [ $# -eq 0 ]; then
  # Both packages, Updp.Core and the updp tool, with the build's version; tools/pack.sh without
  # --no-check also installs the tool and builds the sample against the library package.
  tools/pack.sh --no-check --no-build "$tmp/packages"
fi
dotnet test Updp.sln -c Release --no-build --nologo "$@"
