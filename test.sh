#!/usr/bin/env bash
# Builds and runs the AdaTSQ.NET test suite on a fresh machine: installs the datasets the tests read
# (eng/install-datasets.sh), dotnet restore fetches TorchSharp and libtorch from NuGet, and the build
# patches libLibTorchSharp.so where the system libstdc++ needs it.
# Extra arguments go to `dotnet test` (e.g. --filter "FullyQualifiedName~Quantization").
# Ends with the line "Tests: N passed, M failed[, K skipped]" read from the test results.
set -uo pipefail
cd "$(dirname "$0")"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

bash eng/install-datasets.sh

# The apps are not referenced by the test project: build them too, so a sample or benchmark that no longer
# compiles fails the run (./run.sh would fail on it).
for app in AdaTSQ.Samples/AdaTSQ.Samples.csproj AdaTSQ.Samples/Quickstart/AdaTSQ.Samples.Quickstart.csproj AdaTSQ.Benchmarks/AdaTSQ.Benchmarks.csproj; do
  if ! dotnet build "$app" -c Release -v quiet -nologo; then
    echo "The build of $app failed."
    echo "Tests: 0 passed, 1 failed"
    exit 1
  fi
done

results="$(pwd)/TestResults"
rm -rf "$results"
dotnet test AdaTSQ.Tests/AdaTSQ.Tests.csproj -c Release \
  --logger "trx;LogFileName=results.trx" --logger "console;verbosity=normal" \
  --results-directory "$results" "$@"
rc=$?

trx="$results/results.trx"
if [ ! -f "$trx" ]; then
  echo "No test results were written ($trx missing): the build or the test host failed."
  echo "Tests: 0 passed, 0 failed"
  exit $(( rc == 0 ? 1 : rc ))
fi
counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
count() { printf '%s' "$counters" | sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p"; }
passed=$(count passed); failed=$(count failed); errors=$(count error); executed=$(count executed); total=$(count total)
# Skipped tests (e.g. a CPU path this machine lacks) are counted in total but neither executed nor in notExecuted.
skipped=$(( ${total:-0} - ${executed:-0} ))
failed=$(( ${failed:-0} + ${errors:-0} ))
line="Tests: ${passed:-0} passed, ${failed} failed"
[ "${skipped:-0}" -gt 0 ] && line="$line, ${skipped} skipped"
echo "$line"
if [ "${executed:-0}" -eq 0 ]; then echo "No test was executed." >&2; exit 1; fi
if [ "$failed" -gt 0 ] && [ "$rc" -eq 0 ]; then rc=1; fi
exit $rc
