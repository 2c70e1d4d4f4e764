#!/usr/bin/env bash
# Makes the two NuGet packages, Updp.Core (the library) and updp (the .NET tool), in OUT (default
# ./packages), then checks them as a user would use them, in temporary folders:
#  - the tool, installed with `dotnet tool install --tool-path`, runs: `updp --version` prints the
#    version of Directory.Build.props, `updp models` lists the registry and `updp info` builds a
#    model (libtorch loads through the patched libLibTorchSharp.so the package carries);
#  - a console project outside the repository that references Updp.Core builds and runs the sample
#    (samples/PruneAndExport/Program.cs) on a test fixture; the package's build targets patch
#    libLibTorchSharp.so in that project's output.
# Nothing is installed globally and the NuGet cache gets nothing new: the check restores into a
# temporary folder, with the cache as a fallback folder for the dependencies.
# Takes a few minutes (the tool package carries libtorch: about 150 MB), so test.sh only packs and
# checks the file names (ids and version); this script is the full check.
# Usage: tools/pack.sh [--no-check] [--no-build] [OUT]
#   --no-check  only pack and check that both files exist (ids and version in their names)
#   --no-build  pack what the last Release build made (test.sh, right after its build)
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
check=true
build=()
while [ $# -gt 0 ]; do
  case $1 in
    --no-check) check=false ;;
    --no-build) build=(--no-build) ;;
    -*) echo "usage: tools/pack.sh [--no-check] [--no-build] [OUT]" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
out=$(realpath -m "${1:-$root/packages}")

"$root/tools/ensure-deps.sh"
version=$(dotnet msbuild "$root/src/Updp/Updp.csproj" -getProperty:Version)
tool_version=$(dotnet msbuild "$root/src/Updp.Cli/Updp.Cli.csproj" -getProperty:Version)
[ "$version" = "$tool_version" ] || { echo "pack: the library is $version but the tool $tool_version" >&2; exit 1; }

mkdir -p "$out"
rm -f "$out/Updp.Core.$version.nupkg" "$out/updp.$version.nupkg"
start=$SECONDS
dotnet pack "$root/Updp.sln" -c Release "${build[@]}" -o "$out" --nologo -v quiet
for package in "Updp.Core.$version.nupkg" "updp.$version.nupkg"; do
  [ -f "$out/$package" ] || { echo "pack: $out/$package was not made" >&2; exit 1; }
  echo "pack: $out/$package ($(du -h "$out/$package" | cut -f1))"
done
echo "pack: packed in $((SECONDS - start)) s"
$check || exit 0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "pack: installing the tool into a temporary tool path"
dotnet tool install --tool-path "$tmp/tool" --add-source "$out" --version "$version" updp >/dev/null
printed=$("$tmp/tool/updp" --version)
[ "$printed" = "$version" ] || { echo "pack: updp --version printed '$printed', expected '$version'" >&2; exit 1; }
"$tmp/tool/updp" models >"$tmp/models.txt"
grep -q convnext_atto "$tmp/models.txt" || { cat "$tmp/models.txt" >&2; exit 1; }
"$tmp/tool/updp" info --model convnext_atto --input-size 32 --in-chans 1 --num-classes 10 --json >"$tmp/info.json"
grep -q '"params": 3376450' "$tmp/info.json" || { cat "$tmp/info.json" >&2; exit 1; }
echo "pack: the installed tool runs: updp --version = $printed, models, info (libtorch loads)"

echo "pack: building the sample outside the repository against Updp.Core $version"
mkdir -p "$tmp/consumer"
cat >"$tmp/consumer/nuget.config" <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="updp-local" value="$out" />
  </packageSources>
</configuration>
CONFIG
cat >"$tmp/consumer/PruneAndExport.csproj" <<PROJECT
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <ImplicitUsings>enable</ImplicitUsings>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="Updp.Core" Version="$version" />
  </ItemGroup>
</Project>
PROJECT
cp "$root/samples/PruneAndExport/Program.cs" "$tmp/consumer/"
cache=$(dotnet nuget locals global-packages --list | sed 's/^global-packages: //')
NUGET_PACKAGES="$tmp/nuget" dotnet build "$tmp/consumer" -c Release --nologo -v quiet -p:RestoreFallbackFolders="$cache" >"$tmp/build.log" 2>&1 \
  || { cat "$tmp/build.log" >&2; exit 1; }
dotnet "$tmp/consumer/bin/Release/net10.0/PruneAndExport.dll" \
  "$root/tests/Updp.Tests/Fixtures/convnext_atto_linear.pt" convnext_atto 4,9 "$tmp/pruned.onnx" 32
echo "pack: both packages work; they are in $out"
