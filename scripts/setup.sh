#!/usr/bin/env bash
# Create ./.venv and install snnse into it (idempotent). `--test` also installs the test tools.
#
# torch: the package asks for >= 2.1 (only 2.13.0 tested so far). On the project's machines `pip install torch==2.13.0` resolves to
# a local CPU build; a plain `pip install torch` elsewhere may fetch a multi-GB CUDA build, so
# set TORCH_SPEC to what suits your machine (e.g. TORCH_SPEC="torch>=2.1").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
if [ "${1:-}" = "--test" ]; then
  python -m pip install -q -e ".[test]"
  # Test oracle only (reference PLIF). Pinned because the oracle's numerics are part of the test;
  # --no-deps because it would otherwise pull another torch (2.x releases also need loguru).
  python -c "import spikingjelly.activation_based.neuron" 2>/dev/null \
    || python -m pip install -q --no-deps "spikingjelly==0.0.0.0.14"
else
  python -m pip install -q -e .
fi
python -c "import snnse, torch; print(f'snnse {snnse.__version__} installed in .venv (torch {torch.__version__})')"
