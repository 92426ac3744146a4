#!/usr/bin/env bash
# Idempotent environment setup: does only what is missing or stale.
#   1. a Python 3.11 venv at $VENV (default .venv);
#   2. the pinned requirements (re-installed only when requirements.txt changes);
#   3. PyTorch3D from easypytorch3d==0.7.9.post1, only if `import pytorch3d` fails;
#   4. the extension pt3d_radnerf._C, built in place (ninja recompiles only changed files);
#   5. the checkout on the venv's sys.path (a .pth file), so examples/ and benchmarks/ import it.
# Build switches (see setup.py): FORCE_CUDA=1, PT3D_RADNERF_NO_CUDA=1, TORCH_CUDA_ARCH_LIST, MAX_JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."

# pip as configured on some machines warns about every missing local index folder: hide that noise.
pip_quiet() { "$PY" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }; }
ROOT=$(pwd)
VENV=${VENV:-.venv}
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
  BASE_PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
  echo "[setup] creating venv $VENV with $($BASE_PY --version)"
  "$BASE_PY" -m venv "$VENV"
fi

stamp="$VENV/.pt3d_radnerf_requirements"
want=$(sha256sum requirements.txt | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "[setup] installing pinned requirements (torch 2.11.0 is ~3 GB on a cold pip cache)"
  pip_quiet install -q --disable-pip-version-check "setuptools<82" wheel
  pip_quiet install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

if ! "$PY" -c "import pytorch3d" 2>/dev/null; then
  echo "[setup] installing PyTorch3D (easypytorch3d==0.7.9.post1)"
  pip_quiet install -q --disable-pip-version-check easypytorch3d==0.7.9.post1
fi

if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
# Without a visible GPU the CUDA kernels cannot run here: build CPU-only (about 1 min instead of
# many minutes for five GPU architectures) unless FORCE_CUDA=1 (CI) or TORCH_CUDA_ARCH_LIST asks.
if [ "${FORCE_CUDA:-0}" != "1" ] && [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] \
   && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  export PT3D_RADNERF_NO_CUDA=${PT3D_RADNERF_NO_CUDA:-1}
  echo "[setup] no GPU visible: CPU-only build (FORCE_CUDA=1 also compiles the CUDA kernels)"
fi
mkdir -p build
echo "[setup] building pt3d_radnerf._C (log: build/build.log)"
start=$(date +%s)
if ! "$PY" setup.py build_ext --inplace --force > build/build.log 2>&1; then
  tail -n 60 build/build.log
  echo "[setup] extension build FAILED (full log: build/build.log)" >&2
  exit 1
fi
compiled=$(grep -cE '^\[[0-9]+/[0-9]+\]' build/build.log || true)
cuda_objs=$(find build -name '*_cuda.o' 2>/dev/null | wc -l)
echo "[setup] extension ready in $(( $(date +%s) - start )) s ($compiled compile steps run, $cuda_objs CUDA objects in build/)"

site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$ROOT" > "$site/pt3d_radnerf_checkout.pth"
"$PY" -c "import pt3d_radnerf; print('[setup] pt3d_radnerf', pt3d_radnerf.__version__, 'cuda kernels:', pt3d_radnerf.cuda_compiled())"
