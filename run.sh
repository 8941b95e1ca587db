#!/usr/bin/env bash
# Builds and runs the main AdaTSQ.NET sample on a fresh machine. Arguments go to the sample:
#   ./run.sh                      quantize a small transformer with RTN at W8A8/W4A8/W4A16 and print the errors
#   ./run.sh transformer-rtn --seed 3 --verbose
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
bash eng/install-datasets.sh
dotnet build AdaTSQ.Samples/AdaTSQ.Samples.csproj -c Release -v quiet -nologo 1>&2
exec dotnet AdaTSQ.Samples/bin/Release/net10.0/AdaTSQ.Samples.dll "$@"
