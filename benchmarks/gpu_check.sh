#!/usr/bin/env bash
# The GPU checks (tests/test_gpu.py and benchmarks/gpu.py) as one run, for a machine with an NVIDIA GPU, CuPy and PyTorch
# (CUDA): the GPU tests, then the benchmark. Everything is written under $OUT (default
# ./gpu_check_out): env.txt, pytest_gpu.log, bench.log, gpu_bench.json, gpu_bench.md,
# pytest_rest.log, status.txt. Under 8 minutes in all (each part has its own timeout).
#
#     bash benchmarks/gpu_check.sh     # from anywhere
#     OUT=/some/dir bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
PY=${PYTHON:-python3}

{
    date -u
    nvidia-smi || true
    "$PY" - <<'PYEOF'
import platform, numpy
print("python", platform.python_version(), "numpy", numpy.__version__)
try:
    import cupy
    print("cupy", cupy.__version__, "cuda runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "devices", cupy.cuda.runtime.getDeviceCount())
except Exception as e:
    print("cupy:", type(e).__name__, e)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "cudnn", torch.backends.cudnn.version())
except Exception as e:
    print("torch:", type(e).__name__, e)
from charrnn import device
try:
    print("charrnn device gpu:", device.get_xp("gpu").__name__)
except Exception as e:
    print("charrnn device gpu:", e)
PYEOF
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 1. The GPU tests (skipped, with the reason, if CuPy or the GPU is missing: see the log).
timeout 170 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/pytest_gpu.log"
rc_tests=${PIPESTATUS[0]}

# 2. The benchmark (about 2-3 minutes on one GPU).
timeout 250 "$PY" benchmarks/gpu.py --out "$OUT/gpu_bench" 2>&1 | tee "$OUT/bench.log"
rc_bench=${PIPESTATUS[0]}

# 3. The CPU-side checks of the same code, on this machine too (device shim, kernels as C++).
timeout 50 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_device.py tests/test_kernels.py 2>&1 \
    | tee "$OUT/pytest_rest.log"
rc_rest=${PIPESTATUS[0]}

echo "pytest tests/test_gpu.py: exit $rc_tests; benchmarks/gpu.py: exit $rc_bench; test_device+test_kernels: exit $rc_rest" \
    | tee "$OUT/status.txt"
[ "$rc_tests" = 0 ] && [ "$rc_bench" = 0 ] && [ "$rc_rest" = 0 ]
