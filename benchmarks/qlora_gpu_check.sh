#!/usr/bin/env bash
# QLoRA check on one CUDA GPU (the NLI guide's setup): peft=qlora loads the base in 4-bit NF4 through
# bitsandbytes and trains LoRA adapters on it. Runs offline on random-init architectures of conf/model/ (the
# hub's pretrained weights need the network, and bitsandbytes cannot quantize the GGUF of smollm2-135m):
# qwen2.5-0.5b at full size, and mistral-7b at full width with 4 of its 32 layers. For each it prints the
# loaded model's 4-bit module count and memory, then a short SFT's per-step loss and peak GPU memory.
# Usage (from the repository root, with posttrain and bitsandbytes importable): bash benchmarks/qlora_gpu_check.sh
set -uo pipefail
work=$(mktemp -d)
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
repo=$(pwd)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, trl, peft, bitsandbytes; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__, '| trl', trl.__version__, '| peft', peft.__version__, '| bitsandbytes', bitsandbytes.__version__)" || exit 1

inspect_load() {  # the 4-bit model posttrain loads for these overrides: module count and memory
  python3 - "$@" <<'PY'
import sys, time, torch, bitsandbytes as bnb
from hydra import compose, initialize_config_module
import posttrain.compose  # noqa: F401  (config resolvers)
from posttrain import adapters
from posttrain.models.loading import load_model, load_tokenizer
with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
    cfg = compose(config_name="train", overrides=sys.argv[1:])
tokenizer = load_tokenizer(cfg.model)
started = time.perf_counter()
model = load_model(cfg.model, tokenizer, torch.bfloat16, adapters.quantization_config(cfg))
seconds = time.perf_counter() - started
linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
four_bit = [m for m in linear if isinstance(m, bnb.nn.Linear4bit)]
weights = sum(m.in_features * m.out_features for m in four_bit)
print(f"  loaded in {seconds:.1f} s: {len(four_bit)} of {len(linear)} linear modules in 4 bits "
      f"({weights / 1e6:.1f}M weights, quant_type {four_bit[0].weight.quant_type}); is_loaded_in_4bit={model.is_loaded_in_4bit}")
print(f"  memory: footprint {model.get_memory_footprint() / 2**20:.0f} MiB "
      f"(the same weights in bf16: {(model.get_memory_footprint() + weights * 1.5) / 2**20:.0f} MiB), "
      f"GPU allocated {torch.cuda.memory_allocated() / 2**20:.0f} MiB")
PY
}

train() {  # a short QLoRA SFT through the posttrain command; per-step loss and peak GPU memory
  local name=$1; shift
  local start=$SECONDS
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$work/$name.mem" &
  local sampler=$!
  (cd "$work" && python3 -m posttrain "$@" run_name="$name" > "$name.log" 2>&1)
  local rc=$?
  kill "$sampler" 2>/dev/null
  if [ $rc -ne 0 ]; then echo "  training FAILED (rc $rc):"; tail -25 "$work/$name.log"; return 1; fi
  echo "  trained in $((SECONDS - start)) s wall; peak GPU memory used $(sort -n "$work/$name.mem" | tail -1) MiB (nvidia-smi)"
  python3 - "$work/outputs/$name" <<'PY'
import json, sys
run = sys.argv[1]
rows = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
print("  loss per step:", " ".join(f"{r['step']}:{r['loss']:.3f}" for r in rows if "loss" in r))
results = json.load(open(f"{run}/results.json"))
print("  results:", {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()})
PY
  grep -m1 -o "training: .*on cuda ([a-z0-9]*)" "$work/$name.log" | sed 's/^/  /'
  [ -n "${OUT:-}" ] && cp "$work/$name.log" "$OUT/$name.log"
  return 0
}

common=(method=sft model.init=random peft=qlora lora_rank=16 hardware=gpu max_steps=10 batch_size=8
        learning_rate=2e-4 training.logging_steps=1 training.save_steps=0 eval=none
        dataset.eval_fraction=0.02 logger=none)
status=0
echo "== qwen2.5-0.5b, full size, random init, QLoRA"
inspect_load model=qwen2.5-0.5b "${common[@]}" || status=1
train qlora_qwen25 model=qwen2.5-0.5b "${common[@]}" || status=1
echo "== mistral-7b, full width, 4 of 32 layers, random init, QLoRA"
inspect_load model=mistral-7b model.architecture.num_hidden_layers=4 "${common[@]}" || status=1
train qlora_mistral model=mistral-7b model.architecture.num_hidden_layers=4 "${common[@]}" || status=1
echo "runs in $work/outputs"
exit $status
