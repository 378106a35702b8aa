#!/usr/bin/env bash
# Every benchmark, one machine, one run (the figures in benchmarks/README.md):
#   benchmarks/run_benchmarks.sh MODELS DATA DEVICE [OUT]
# MODELS: folder of the shared checkpoints; DATA: the CIFAR-10 .npz or folder; DEVICE: cpu or cuda;
# OUT: results folder (default benchmarks/results). The comparison with the official CWA and AdaEA
# code runs when $RBE_CWA_CODE and $RBE_ADAEA_CODE name copies of those repositories.
# Optional: $STEPS (override every attack's iterations in attack_speed, to save time on a CPU),
# $VARIANTS (default: bf16 channels_last stack compile cudagraphs on cuda; stack channels_last on cpu),
# $GRID_N and $BF16_N (test images), $PYTHON (default python3).
set -uo pipefail
models=${1:?MODELS folder}; data=${2:?DATA path}; device=${3:?DEVICE (cpu or cuda)}; out=${4:-benchmarks/results}
python=${PYTHON:-python3}
mkdir -p "$out"
if [ "$device" = cpu ]; then variants=${VARIANTS:-stack channels_last}; else variants=${VARIANTS:-bf16 channels_last stack compile cudagraphs}; fi
status=0
run() { echo "== $*"; "$python" "$@" || status=1; }
common=(--models "$models" --data "$data" --device "$device")
run benchmarks/attack_speed.py "${common[@]}" ${STEPS:+--steps "$STEPS"} --out "$out/attack_speed_$device.json"
if [ -n "${RBE_CWA_CODE:-}" ] && [ -n "${RBE_ADAEA_CODE:-}" ]; then
    run benchmarks/references.py --models-dir "$models" --data "$data" --device "$device" \
        --out "$out/references_$device.json"
fi
if [ "$device" = cpu ]; then run benchmarks/allocator_ab.py --models "$models" --data "$data" --out "$out/allocator_ab_cpu.json"; fi
run benchmarks/bf16_agreement.py "${common[@]}" --n "${BF16_N:-512}" --out "$out/bf16_agreement_$device.json"
run benchmarks/grid_speed.py "${common[@]}" ${GRID_N:+--n "$GRID_N"} --out "$out/grid_speed_$device.json"
# shellcheck disable=SC2086
run benchmarks/attack_speed.py "${common[@]}" ${STEPS:+--steps "$STEPS"} --surrogates 8 --variants fp32 $variants \
    --out "$out/attack_speed_variants_$device.json"
if [ "$device" = cpu ]; then  # compiling 8 surrogates per attack takes too long on a CPU: K = 2, medians of 3
    run benchmarks/attack_speed.py "${common[@]}" ${STEPS:+--steps "$STEPS"} --surrogates 2 --variant-surrogates 2 \
        --variants fp32 compile --repeats 3 --attacks Ens CWA AdaEA SVRE LGV PGD --out "$out/attack_speed_compile_cpu.json"
fi
exit $status
