#!/usr/bin/env bash
# Create .venv with every dependency of condition pinned to versions that resolve together,
# and install the Fashion-MNIST data set from Debian when apt is usable.
# Re-running is fast: pip skips what is already satisfied.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

# torch first and exactly pinned: an unpinned torch pulled in by executorch would take a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "setup: installing torch 2.13.0 (CPU)"
  "${PIP[@]}" install -q "torch==2.13.0"
fi

echo "setup: installing condition and its pinned dependencies"
"${PIP[@]}" install -q -e ".[dev]"

DATA_DIR=/usr/share/datasets/fashion-mnist
if [ -d "$DATA_DIR" ] && ls "$DATA_DIR"/*idx* >/dev/null 2>&1; then
  echo "setup: Fashion-MNIST found in $DATA_DIR"
elif command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; }; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing Debian package dataset-fashion-mnist"
  if ! { $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
         { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null; }; }; then
    echo "setup: WARNING could not install dataset-fashion-mnist with apt; pass --dataset PATH (IDX or .npz) to condition" >&2
  fi
else
  echo "setup: WARNING apt-get is not usable here; install the Debian package dataset-fashion-mnist" >&2
  echo "       or pass --dataset PATH (a folder of MNIST-style IDX files, or an .npz) to condition" >&2
fi

echo "setup: done. Try: .venv/bin/condition doctor"
