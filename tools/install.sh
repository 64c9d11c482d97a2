#!/usr/bin/env bash
# One-command set-up of opera on a fresh Python 3.11 machine.
#
#   bash tools/install.sh            # CUDA ops if a GPU is visible, else CPU ops
#   bash tools/install.sh --cuda     # CUDA ops even without a GPU (build node):
#                                    # set TORCH_CUDA_ARCH_LIST, e.g. 9.0
#   bash tools/install.sh --cpu      # CPU ops even on a GPU machine
#
# Installs, into the active Python (a virtualenv if one is active, else
# `python3`; set PYTHON=... to choose): torch + torchvision, numpy<2,
# mmcv-full 1.7.2 built from source with its ops, mmdet 2.28.2, pycocotools,
# xtcocotools and this package in editable mode. For CUDA ops without a
# matching nvcc, the CUDA compiler wheels for torch.version.cuda are
# pip-installed and used (tools/cuda_build_plan.py decides; see
# docs/get_started.md). Safe to run again: finished steps are checked and
# skipped, and the mmcv-full wheel is cached per flavour (torch, CPU/CUDA ops,
# architectures) in ~/.cache/opera-hdetr.
#
# Environment overrides:
#   PYTHON             interpreter to install into (default: python3)
#   TORCH_VERSION      default 2.14.1 (its wheel lies on this project's machines)
#   TORCHVISION_VERSION default 0.29.1 (the torchvision built for that torch)
#   MMCV_CACHE         wheel cache (default ~/.cache/opera-hdetr/wheels)
#   MAX_JOBS           parallel compile jobs for mmcv-full (default: nproc)
#   OPERA_CUDA_OPS     auto (default), yes (= --cuda) or no (= --cpu)
#   TORCH_CUDA_ARCH_LIST GPU architectures to compile for (default: the
#                      visible GPUs'; required with --cuda and no GPU)
#   CUDA_HOME          a CUDA toolkit to compile with (default: the one with
#                      the nvcc on PATH, else /usr/local/cuda, else the
#                      compiler wheels)
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
CUDA_OPS_WANTED=${OPERA_CUDA_OPS:-auto}
for arg in "$@"; do
  case $arg in
    --cuda) CUDA_OPS_WANTED=yes ;;
    --cpu) CUDA_OPS_WANTED=no ;;
    *) echo "usage: bash tools/install.sh [--cuda | --cpu]" >&2; exit 1 ;;
  esac
done

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

step "mmcv-full ${MMCV_VERSION} with ops (CUDA ops: ${CUDA_OPS_WANTED})"
# Sets CUDA_OPS, FLAVOUR, TORCH_CUDA_ARCH_LIST, CUDA_HOME, CUDA_MAJOR and
# NVCC_PACKAGES, or stops with the reason (CPU torch, too old a GPU, ...).
plan=$("$PYTHON" "$REPO_ROOT/tools/cuda_build_plan.py" --cuda-ops "$CUDA_OPS_WANTED")
eval "$plan"
if [ "$CUDA_OPS" = 1 ]; then
  echo "CUDA ops for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, CUDA_HOME=$CUDA_HOME"
  ops_check="from mmcv.ops import get_compiling_cuda_version as v; sys.exit(v() == 'not available')"
else
  echo "CPU ops"
  ops_check="import mmcv.ops"
fi
if have "import sys, mmcv; ${ops_check}; sys.exit(mmcv.__version__ != '${MMCV_VERSION}')"; then
  echo "already installed"
else
  cache_dir="$MMCV_CACHE/$FLAVOUR"
  wheel=$(ls "$cache_dir"/mmcv_full-${MMCV_VERSION}-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    build_env=(MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)})
    if [ "$CUDA_OPS" = 1 ]; then
      if [ -n "$NVCC_PACKAGES" ]; then
        step "CUDA ${CUDA_MAJOR} compiler wheels: ${NVCC_PACKAGES}"
        # shellcheck disable=SC2086  # one word per package
        "${PIP[@]}" $NVCC_PACKAGES
      fi
      [ -x "$CUDA_HOME/bin/nvcc" ] || {
        echo "no nvcc at $CUDA_HOME/bin/nvcc: set CUDA_HOME to a CUDA ${CUDA_MAJOR} toolkit" >&2; exit 1; }
      # torch links the extension with -L<CUDA_HOME>/lib64 (or lib) -lcudart;
      # the pip runtime wheel ships only libcudart.so.<major>.
      lib_dir="$CUDA_HOME/lib64"; [ -d "$lib_dir" ] || lib_dir="$CUDA_HOME/lib"
      if [ ! -e "$lib_dir/libcudart.so" ]; then
        [ -e "$lib_dir/libcudart.so.${CUDA_MAJOR}" ] || {
          echo "neither libcudart.so nor libcudart.so.${CUDA_MAJOR} in $lib_dir" >&2; exit 1; }
        ln -s "libcudart.so.${CUDA_MAJOR}" "$lib_dir/libcudart.so"
        echo "linked $lib_dir/libcudart.so -> libcudart.so.${CUDA_MAJOR}"
      fi
      build_env+=(FORCE_CUDA=1 "CUDA_HOME=$CUDA_HOME" "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST")
      echo "no cached wheel for $FLAVOUR: building CUDA ops from source (about 1 h per architecture on one core)"
    else
      # mmcv's setup.py builds CUDA ops whenever torch sees a GPU.
      build_env+=(CUDA_VISIBLE_DEVICES= FORCE_CUDA=0)
      echo "no cached wheel for $FLAVOUR: building from source (10-20 min on 2 cores)"
    fi
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
    build_start=$SECONDS
    (cd "$src" && env "${build_env[@]}" \
      "$PYTHON" -m pip wheel --disable-pip-version-check --no-deps \
      --no-build-isolation -w "$cache_dir" .)
    echo "mmcv-full built in $(( (SECONDS - build_start) / 60 )) min"
    wheel=$(ls "$cache_dir"/mmcv_full-${MMCV_VERSION}-*.whl | head -n 1)
  else
    echo "using cached wheel $wheel"
  fi
  # --force-reinstall: the same version with CPU ops may be installed.
  "${PIP[@]}" --no-deps --force-reinstall "$wheel"
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
from mmcv.ops import get_compiling_cuda_version
print(f'torch {torch.__version__} (CUDA available: {torch.cuda.is_available()}), '
      f'mmcv-full {mmcv.__version__} (ops compiled with CUDA: '
      f'{get_compiling_cuda_version()}), mmdet {mmdet.__version__}, '
      f'opera {opera.__version__}')
EOF
echo "opera is installed. Next: bash tools/quickstart.sh"
