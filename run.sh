#!/usr/bin/env bash
# Builds and runs the AdaTSQ.NET experiments CLI (AdaTSQ.Samples) on a fresh machine. Arguments go to the CLI:
#   ./run.sh                      = ./run.sh evaluate: FP32 vs RTN W8A8/W4A8, GPTQ W4A8 and GPTQ + Fisher W4A8 on the
#                                 shipped Fashion-MNIST DiT, each also on the integer kernels; writes artifacts/eval/
#   ./run.sh --help               lists the samples (evaluate, search, fisher-plot, transformer-rtn, ...) and their options
#   ./run.sh transformer-rtn --seed 3 --verbose
# The Quickstart is a separate project: dotnet run -c Release --project AdaTSQ.Samples/Quickstart
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
bash eng/install-datasets.sh
dotnet build AdaTSQ.Samples/AdaTSQ.Samples.csproj -c Release -v quiet -nologo 1>&2
exec dotnet AdaTSQ.Samples/bin/Release/net10.0/AdaTSQ.Samples.dll "$@"
