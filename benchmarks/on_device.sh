#!/usr/bin/env bash
# Every check that needs an accelerator, as one prepared run on a lent GPU (or TPU)
# machine that has JAX but no network.
#
#   bash benchmarks/on_device.sh wheels          # here, with pip: the missing packages as wheels in .whl/
#   bash benchmarks/on_device.sh run OUT [S]     # there: install, then the checks, within S seconds (default 540)
#
# `wheels` downloads what such a machine usually lacks (grain and its array-record
# and portpicker, beartype for the test suite's runtime type checks) for CPython
# 3.12 on x86-64 Linux into .whl/ (kept out of git by .gitignore); carry .whl to the
# machine. `run` installs them (no index) and copies seqkit into /tmp/site, then runs, in order of priority, each under `timeout` and the budget
# left, appending to OUT/log.txt and OUT/summary.txt:
#
#   1. tests      the `gpu` (or `tpu`) test tier: tests/kernels/test_kernels_on_device.py
#   2. kernels    benchmarks/kernels.py at L = 4K, 16K, 64K, every kernel, XLA vs Pallas
#                 (one process: temporaries from the compiler, no isolated peaks)
#   3. sweep      benchmarks/sweep.py, K = 1, 2, 4, 8 vmapped against sequential
#   4. efficiency benchmarks/lra_efficiency.py --protocol s4 at L = 1K, 4K, 16K
#
# A step the budget cannot reach is skipped and said so. OUT receives at most eight
# files (summary.txt, log.txt and two JSON + figure pairs), what the device tool
# brings back.
set -u

wheels() {
    mkdir -p .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d .whl grain==0.2.18 array-record portpicker beartype
    ls -l .whl
}

run() {
    local out=${1:?usage: on_device.sh run OUT [SECONDS]} budget=${2:-540}
    mkdir -p "$out"
    local start
    start=$(date +%s)
    : >"$out/summary.txt"
    if [ -d .whl ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    fi
    # seqkit as installed (pyproject maps kernels/ and recipes/ into the package),
    # without a build backend
    rm -rf /tmp/site/seqkit && mkdir -p /tmp/site && cp -r seqkit /tmp/site/seqkit &&
        cp -r kernels /tmp/site/seqkit/kernels && cp -r recipes /tmp/site/seqkit/recipes || return 1
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
    unset JAX_PLATFORMS
    local backend
    backend=$(python3 -c "import jax; print(jax.default_backend())") || {
        echo "python3 cannot import jax here" | tee -a "$out/summary.txt"
        return 1
    }
    local platform=$backend
    [ "$backend" = gpu ] && platform=cuda
    {
        echo "backend $backend; $(python3 -c 'import jax; print(jax.__version__, jax.devices()[0].device_kind)')"
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
    } | tee -a "$out/summary.txt"

    step() {  # name, seconds at most, command...
        local name=$1 cap=$2
        shift 2
        local left=$((budget - ($(date +%s) - start)))
        if [ "$left" -lt 30 ]; then
            echo "$name: skipped, the budget is spent" | tee -a "$out/summary.txt"
            return
        fi
        [ "$cap" -gt "$left" ] && cap=$left
        echo "== $name (at most ${cap}s): $*" >>"$out/log.txt"
        local t0=$(date +%s)
        timeout "$cap" "$@" >>"$out/log.txt" 2>&1
        local rc=$?
        local note=""
        [ "$rc" -eq 124 ] && note=" (stopped at its time limit)"
        echo "$name: exit $rc in $(($(date +%s) - t0))s$note" | tee -a "$out/summary.txt"
    }

    export JAX_PLATFORMS=$platform
    step tests 240 python3 -m pytest -q -p no:cacheprovider -n 0 -m "$backend" tests/kernels/test_kernels_on_device.py
    step kernels 200 python3 benchmarks/kernels.py --no-isolate --repeats 3 --lengths 4096 16384 65536 \
        --json "$out/kernels.json" --plot "$out/kernels.png"
    step sweep 120 python3 benchmarks/sweep.py --json "$out/sweep.json" --plot "$out/sweep.png"
    step efficiency 150 python3 benchmarks/lra_efficiency.py --protocol s4 --lengths 1024 4096 16384 \
        --json "$out/efficiency.json" --plot "$out/efficiency.png"
    echo "total $(($(date +%s) - start))s" | tee -a "$out/summary.txt"
}

case "${1:-}" in
wheels) wheels ;;
run)
    shift
    run "$@"
    ;;
*)
    sed -n '2,8p' "$0"
    exit 2
    ;;
esac
