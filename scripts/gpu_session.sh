#!/usr/bin/env bash
# One step of a GPU session on a lent device machine (see docs/gpu-owed.md).
#
#   scripts/gpu_session.sh kernels    # pytest -m gpu on the kernel library
#   scripts/gpu_session.sh sanitizer  # the same, a subset, under compute-sanitizer
#   scripts/gpu_session.sh backend    # the cuda backend's gpu tests
#   scripts/gpu_session.sh bench      # python -m bench.kernels
#   scripts/gpu_session.sh preempt    # python -m bench.preempt on cuda
#   scripts/gpu_session.sh colocate   # python -m bench.colocate on cuda
#
# Each step fits one 10-minute device call. It installs pyzmq from the carried
# .whl/ folder (the device image lacks it; fetch it here first, see
# docs/gpu-owed.md), installs reefd without dependencies, writes everything
# under $OUT (logs, junit XML, bench output) and a run record `<step>.json` with
# the device, driver, CUDA, torch and reefd versions, the date and the command.
set -uo pipefail
step="${1:?usage: scripts/gpu_session.sh kernels|sanitizer|backend|bench|preempt|colocate}"
out="${OUT:?OUT is set on the device machine}"
export PYTHONUNBUFFERED=1

if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$out/install.log" 2>&1 \
    || { echo "pip install -e . failed; using the source tree" >&2; \
         for d in kernels clients profiler interference; do ln -sfn "../$d" "reefd/$d"; done; \
         export PYTHONPATH=".:${PYTHONPATH:-}"; }

case "$step" in
    kernels)
        cmd=(python3 -m pytest -m gpu -q -x --junitxml "$out/kernels.xml"
             tests/gpu/test_kernels.py tests/gpu/test_elementwise_ops.py
             tests/gpu/test_norm_gather_ops.py tests/gpu/test_bmm_tc.py
             tests/gpu/test_conv_tc.py) ;;
    sanitizer)
        cmd=(compute-sanitizer --tool memcheck --error-exitcode 3
             python3 -m pytest -m gpu -q -x -k "plain_matches_torch and not 3000003"
             tests/gpu/test_kernels.py) ;;
    backend)
        export REEFD_RESULTS_DIR="$out"
        cmd=(python3 -m pytest -m gpu -q -s --junitxml "$out/backend.xml"
             tests/gpu/test_cuda_backend.py) ;;
    bench)
        cmd=(python3 -m bench.kernels --out "$out" --max-per-kernel 200) ;;
    preempt)
        cmd=(python3 -m bench.preempt --backend cuda --duration-s 5
             --out "$out/preempt") ;;
    colocate)
        cmd=(python3 -m bench.colocate --backend cuda --duration-s 10
             --out "$out/colocate") ;;
    *)
        echo "unknown step '$step'" >&2; exit 2 ;;
esac

start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"${cmd[@]}" 2>&1 | tee "$out/$step.log"
status=${PIPESTATUS[0]}
python3 - "$step" "$status" "$start" "${cmd[*]}" >"$out/$step.json" <<'EOF'
import json, platform, subprocess, sys
step, status, start, command = sys.argv[1:5]
def run(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""
record = {"step": step, "exit_status": int(status), "started": start,
          "command": command, "python": platform.python_version()}
smi = run("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader")
record["gpu"], _, record["driver"] = smi.partition(", ")
try:
    import torch
    record["torch"], record["cuda"] = torch.__version__, torch.version.cuda
except ImportError:
    pass
try:
    import reefd
    record["reefd"] = reefd.__version__
except ImportError:
    pass
record["git"] = run("git", "rev-parse", "HEAD")
print(json.dumps(record, indent=1))
EOF
exit "$status"
