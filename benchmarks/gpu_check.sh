#!/usr/bin/env bash
# GPU check: the default tic-tac-toe SFT -> DPO pipeline, then a LoRA DPO run from its SFT stage, on one
# CUDA GPU in bf16 (hardware=gpu). Prints each run's wall time and headline results.
# Usage (from the repository root, with posttrain importable): bash benchmarks/gpu_check.sh [workdir]
set -euo pipefail
work=${1:-$(mktemp -d)}
mkdir -p "$work"
export HF_HUB_OFFLINE=1
repo=$(pwd)
cd "$work"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, trl; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__, '| trl', trl.__version__)"

summary() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1] + "/results.json"))
keys = ("legal_move_rate", "optimal_move_rate", "vs_random_win_rate", "vs_perfect_draw_rate", "vs_perfect_loss_rate")
for stage, res in (r.get("stages") or {"run": r}).items():
    print(f"  {stage}: " + ", ".join(f"{k}={res[k]:.3f}" for k in keys), f"train_seconds={res['train_seconds']}")
PY
}

run() {
  local name=$1; shift
  local start=$SECONDS
  python3 -m posttrain hardware=gpu run_name="$name" "$@" > "$name.log" 2>&1 || { tail -30 "$name.log"; exit 1; }
  echo "$name: $((SECONDS - start)) s wall, device: $(grep -m1 -o 'on cuda ([a-z0-9]*)' "$name.log")"
  summary "outputs/$name"
  [ -n "${OUT:-}" ] && cp "outputs/$name/results.json" "$OUT/$name.results.json" && cp "$name.log" "$OUT/$name.log" || true
}

run gpu_default
run gpu_lora_dpo method=dpo lora_rank=16 model.path=outputs/gpu_default/1-sft
echo "runs in $work/outputs"
