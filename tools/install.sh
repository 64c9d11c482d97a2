#!/usr/bin/env bash
# One-command set-up of opera on a fresh Python 3.11 machine.
#
#   bash tools/install.sh
#
# Installs, into the active Python (a virtualenv if one is active, else
# `python3`; set PYTHON=... to choose): torch + torchvision, numpy<2,
# mmcv-full 1.7.2 built from source with its ops (CUDA ops when nvcc and a GPU
# are there, CPU ops otherwise), mmdet 2.28.2, pycocotools, xtcocotools and
# this package in editable mode. Safe to run again: finished steps are checked
# and skipped, and the mmcv-full wheel is cached in ~/.cache/opera-hdetr.
#
# Environment overrides:
#   PYTHON             interpreter to install into (default: python3)
#   TORCH_VERSION      default 2.14.1 (its wheel lies on this project's machines)
#   TORCHVISION_VERSION default 0.29.1 (the torchvision built for that torch)
#   MMCV_CACHE         wheel cache (default ~/.cache/opera-hdetr/wheels)
#   MAX_JOBS           parallel compile jobs for mmcv-full (default: nproc)
set -euo pipefail

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.14.1}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.29.1}
MMCV_VERSION=1.7.2
MMDET_VERSION=2.28.2
MMCV_CACHE=${MMCV_CACHE:-$HOME/.cache/opera-hdetr/wheels}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIP=("$PYTHON" -m pip install --disable-pip-version-check
     --root-user-action=ignore)

step() { printf '\n==> %s\n' "$*"; }
have() { "$PYTHON" -c "$1" >/dev/null 2>&1; }

step "Python: $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 8))' || {
  echo "opera needs Python >= 3.8" >&2; exit 1; }

step "torch ${TORCH_VERSION} + torchvision ${TORCHVISION_VERSION}"
if have "import torch, torchvision, sys; sys.exit(not (torch.__version__.split('+')[0] == '${TORCH_VERSION}' and torchvision.__version__.split('+')[0] == '${TORCHVISION_VERSION}'))"; then
  echo "already installed"
else
  # numpy<2: mmcv-full 1.7 and mmdet 2.x use numpy 1 APIs.
  "${PIP[@]}" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" "numpy<2"
fi

step "build tools for mmcv-full (numpy<2, setuptools with pkg_resources, wheel)"
# torch >= 2.14 wants setuptools >= 77.0.3; mmcv's setup.py imports
# pkg_resources, which setuptools 81 removed.
"${PIP[@]}" "numpy<2" "setuptools>=77.0.3,<81" wheel ninja

step "mmcv-full ${MMCV_VERSION} with ops"
if have "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '${MMCV_VERSION}')"; then
  echo "already installed"
else
  flavour=$("$PYTHON" - <<'EOF'
import shutil, torch
cuda = torch.cuda.is_available() and shutil.which('nvcc') is not None
print(f"torch{torch.__version__.replace('+', '_')}-{'cuda' if cuda else 'cpu'}ops")
EOF
)
  cache_dir="$MMCV_CACHE/$flavour"
  wheel=$(ls "$cache_dir"/mmcv_full-${MMCV_VERSION}-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    echo "no cached wheel for $flavour: building from source (10-20 min on 2 cores)"
    build_dir=$(mktemp -d)
    trap 'rm -rf "$build_dir"' EXIT
    "$PYTHON" -m pip download --disable-pip-version-check --no-deps \
      --no-binary :all: --no-build-isolation -d "$build_dir" "mmcv-full==${MMCV_VERSION}"
    tar -xzf "$build_dir"/mmcv-full-${MMCV_VERSION}.tar.gz -C "$build_dir"
    src="$build_dir/mmcv-full-${MMCV_VERSION}"
    # mmcv 1.7 compiles with -std=c++17; torch >= 2.14 headers need C++20.
    if have "import torch, sys; sys.exit(tuple(map(int, torch.__version__.split('+')[0].split('.')[:2])) < (2, 14))"; then
      echo "torch >= 2.14: compiling mmcv ops with -std=c++20"
      sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    fi
    mkdir -p "$cache_dir"
    (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      "$PYTHON" -m pip wheel --disable-pip-version-check --no-deps \
      --no-build-isolation -w "$cache_dir" .)
    wheel=$(ls "$cache_dir"/mmcv_full-${MMCV_VERSION}-*.whl | head -n 1)
  else
    echo "using cached wheel $wheel"
  fi
  "${PIP[@]}" --no-deps "$wheel"
  # mmcv's own runtime needs (opencv < 4.11 still supports numpy 1.x).
  "${PIP[@]}" addict packaging Pillow pyyaml "yapf==0.40.1" "opencv-python-headless>=4.5,<4.11" "numpy<2"
fi

step "mmdet ${MMDET_VERSION}, COCO tools and the rest"
"${PIP[@]}" -r "$REPO_ROOT/requirements/runtime.txt" -r "$REPO_ROOT/requirements/tests.txt"
# mmdet's metadata asks for nothing we lack; --no-deps keeps pip from
# second-guessing the mmcv-full built above.
"${PIP[@]}" --no-deps "mmdet==${MMDET_VERSION}"

step "opera (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e "$REPO_ROOT"

step "check"
"$PYTHON" - <<'EOF'
import torch, mmcv, mmdet, opera
from mmcv.ops import MultiScaleDeformableAttention  # noqa: F401  (compiled ops)
print(f'torch {torch.__version__} (CUDA available: {torch.cuda.is_available()}), '
      f'mmcv-full {mmcv.__version__}, mmdet {mmdet.__version__}, '
      f'opera {opera.__version__}')
EOF
echo "opera is installed. Next: bash tools/quickstart.sh"
