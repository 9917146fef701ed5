#!/usr/bin/env bash
# The GPU check of the Triton kernels, in one call on a CUDA machine (see
# docs/triton.md). Under 8 minutes on an H200, much of it Triton compiling
# the kernels on first use:
#   1. installs the project (pip install --no-deps -e .; if that fails, a
#      shadow of the source tree on PYTHONPATH, with the package-dir mapping
#      of pyproject.toml: triton_kernels/ -> fxanalog.triton_kernels);
#   2. runs the GPU variants of tests/test_triton_tile.py (the forward kernel)
#      and tests/test_triton_update.py (the pulsed update kernel): the
#      compiled kernels (not interpreted) against the torch path and formulas;
#   3. runs bench/bench_gpu.py (the forward: ratios against cuBLAS and the
#      torch path) and bench/bench_gpu_training.py (one training step against
#      digital SGD), each also writing its figures as JSON.
# Exit status: 0 if everything ran and passed, 1 if a test or a benchmark
# failed, 2 if the machine cannot run the check. If $OUT is set, the whole
# output is written to $OUT/gpu_check.log and the JSON figures to
# $OUT/bench_gpu.json and $OUT/bench_gpu_training.json.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    exec > >(tee "$OUT/gpu_check.log") 2>&1
fi
PY=${PYTHON:-$(command -v python3 || command -v python)}
unset TRITON_INTERPRET FXANALOG_FORCE_TORCH FXANALOG_TRITON_PRECISION
start=$SECONDS
# Python runs from a scratch directory: with the repository root as the
# working directory, its fxanalog/ (without triton_kernels/) would shadow the
# installed package.
work=$(mktemp -d)

echo "== environment ($(date -u '+%Y-%m-%d %H:%M UTC'))"
if ! "$PY" - <<'EOF'
import sys
import torch
print("python", sys.version.split()[0], "| torch", torch.__version__)
import triton
print("triton", triton.__version__)
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible to torch")
print("device:", torch.cuda.get_device_name(0))
EOF
then
    echo "gpu_check: this machine cannot run the GPU check (see above)"
    exit 2
fi

echo "== install"
if "$PY" -m pip install --no-deps --no-build-isolation -q -e . ; then
    echo "installed with pip install --no-deps -e ."
else
    echo "pip install failed: running from the source tree"
    shadow=$(mktemp -d)
    mkdir "$shadow/fxanalog"
    for f in "$root"/fxanalog/*; do ln -s "$f" "$shadow/fxanalog/"; done
    ln -s "$root/triton_kernels" "$shadow/fxanalog/triton_kernels"
    ln -s "$root/passes" "$shadow/fxanalog/passes"
    export PYTHONPATH="$shadow${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! (cd "$work" && "$PY" -c "import fxanalog.triton_kernels.tile_mvm as m; assert m.triton_tile_forward is not None; print('fxanalog from', m.__file__)"); then
    echo "gpu_check: fxanalog's Triton path does not import"
    exit 2
fi

status=0
echo "== GPU tests (compiled kernels)"
if "$PY" -c "import pytest" 2>/dev/null; then
    # Compiling the ~50 kernel variants of the tests dominates: run the tests
    # in 6 parallel shards (Triton's on-disk cache is safe to share).
    sel="gpu or heuristic or precision or fall_back or bad_shapes or several_rounds"
    (cd "$work" && "$PY" -m pytest -q --collect-only -p no:cacheprovider "$root/tests/test_triton_tile.py" \
        "$root/tests/test_triton_update.py" -k "$sel") \
        | grep '::' | sed -E "s|^.*tests/(test_triton_[a-z]+\.py)::|$root/tests/\1::|" > "$work/ids" || true
    echo "$(wc -l < "$work/ids") tests in 6 shards"
    split -n r/6 -d "$work/ids" "$work/shard."
    pids=()
    for shard in "$work"/shard.*; do
        [ -s "$shard" ] || continue
        mapfile -t ids < "$shard"
        (cd "$work" && timeout 150 "$PY" -m pytest -q -p no:cacheprovider "${ids[@]}") > "$shard.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
    for shard in "$work"/shard.*.log; do
        echo "-- $(basename "$shard" .log)"
        tail -n 40 "$shard"
    done
    [ -s "$work/ids" ] || { echo "gpu_check: no test collected"; status=1; }
else
    echo "(pytest not installed: running the GPU tests with a minimal runner)"
    (cd "$work" && ROOT="$root" timeout 150 "$PY" - <<'EOF') || status=1
import os, sys, traceback, types
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests"))


class _Mark:  # pytest.mark.* as plain decorators
    def __getattr__(self, name):
        return lambda *a, **k: (lambda f: f)


stub = types.ModuleType("pytest")
stub.mark = _Mark()
stub.fixture = lambda *a, **k: (lambda f: f)
sys.modules["pytest"] = stub
import test_triton_tile as T
import test_triton_update as U

calls = [(f"noise_free[{n}]", T.test_noise_free_matches_torch_path_gpu, (n,)) for n in T.CASES]
calls += [(f"stats[{n}]", T.test_noise_statistics_gpu, (n,)) for n in T.STATS]
calls += [(f"layers[{n}]", T.test_analog_layers_through_the_op_gpu, (n,)) for n in T.LAYERS]
calls += [("seeded", T.test_seeded_and_fresh_draws_gpu, ()), ("dispatch", T.test_gpu_default_blocks_and_dispatch, ())]
calls += [(f"update_given[{n}]", U.test_given_trains_match_the_torch_path_gpu, (n,)) for n in U.GIVEN]
calls += [("update_stats", U.test_statistics_gpu, ()), ("update_step", U.test_pulsed_training_step_on_the_gpu, ())]
failed = 0
for name, fn, args in calls:
    try:
        fn(*args)
        print("PASS", name, flush=True)
    except Exception:
        failed += 1
        print("FAIL", name, flush=True)
        traceback.print_exc()
print(f"{len(calls) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
fi
echo "tests done after $((SECONDS - start)) s"

figures=${OUT:-$work}
[ -d "$figures" ] || figures=$work
echo "== benchmark: the forward"
(cd "$work" && timeout 200 "$PY" "$root/bench/bench_gpu.py" --json "$figures/bench_gpu.json") || status=1
echo "== benchmark: one training step"
(cd "$work" && timeout 150 "$PY" "$root/bench/bench_gpu_training.py" --json "$figures/bench_gpu_training.json") \
    || status=1
echo "gpu_check: done after $((SECONDS - start)) s, status $status"
exit $status
