"""conf/hardware/: which device and precision a run trains with, and the throughput settings.

The knobs of conf/hardware/auto.yaml (attention, liger, packing, compile, fused_optimizer, micro_batch,
micro_batch_tokens, precompute_reference) are resolved once per run here, from the method, the model and
the GPU at hand. On a CPU `auto` keeps the plain settings, so CPU runs train exactly as before; on a CUDA
GPU it picks the fast choice. A value other than auto always wins. `Hardware.record()` is what the run
directory's hardware.json holds; `Hardware.summary()` is the one log line.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass, field

import torch
from omegaconf import DictConfig

from posttrain.adapters import mixture_of_experts
from posttrain.distributed import job_processes, training_device
from posttrain.errors import PosttrainError
from posttrain.memory import LOGIT_BYTES, activation_bytes_per_token, model_shape
from posttrain.models.attention import kernel_available as varlen_kernel_available

log = logging.getLogger(__name__)

ATTENTIONS = ("sdpa", "flex_attention", "flash_attention_2", "varlen", "eager")
# What the throughput choices read from a method's registry row (posttrain.registry), so a new row needs no
# edit here. Packing: TRL's SFTTrainer packs whole examples padding-free with per-example attention
# (packing_strategy="bfd": position_ids restart at each example and transformers builds a block-causal mask
# from them for sdpa/flex/eager, or passes cu_seq_lens to flash attention). A row's padding_free_trainer
# (posttrain.methods.padding_free) runs when packing is on: for SFT TRL's trainer without its per-step GPU
# syncs; for DPO (whose padding_free TRL 1.16 disables), KTO, and CPO/SimPO/ORPO (through TRL's fused LM head,
# posttrain.methods.padding_free_logits), packed forwards.
def packs(method: str) -> bool:
    row = _row(method)
    return row.trainer == "trl:SFTTrainer" or row.padding_free_trainer is not None


def precomputes_reference(method: str) -> bool:
    """An offline trainer with a frozen reference can score it once before training (precompute_ref_log_probs)."""
    row = _row(method)
    return row.reference and not row.samples_while_training


def online(method: str) -> bool:
    """Its batch is a number of generation groups, so the micro-batch stays batch_size."""
    return _row(method).samples_while_training


def full_logits(method: str, packing: bool) -> bool:
    """Whether the method's trainer materialises the full logits: TRL's CPO/ORPO padded, while their
    padding-free trainers (posttrain.methods.padding_free_logits) score through TRL's fused LM head."""
    row = _row(method)
    return row.head == "causal_lm" and not row.fused_lm_head and not (packing and row.padding_free_trainer)


def sequences_per_row(method: str) -> int:
    """Sequences one row forwards: chosen and rejected together for paired preference rows."""
    row = _row(method)
    return 2 if row.form == "preference" and not row.samples_while_training else 1


def _row(method: str):
    from posttrain.registry import get_method

    return get_method(method)


# Optimizer steps per generate call for online RL on a GPU (hardware.rollout_steps=auto): a decoding step costs
# about as much for 512 sequences as for 64 (the GPU waits on transformers' per-token host work), so one call
# samples several steps' completions: at least ROLLOUT_STEPS, more until a call samples ROLLOUT_COMPLETIONS
# sequences, at most ROLLOUT_STEPS_MAX. Each step after the first trains slightly off-policy, which TRL's
# clipped importance ratio corrects.
ROLLOUT_STEPS = 4
ROLLOUT_COMPLETIONS = 512
ROLLOUT_STEPS_MAX = 8
# grpo/rloo on a GPU (hardware.compile_generation=auto): decode with a static KV cache under torch.compile, the
# prompts left-padded to a multiple of this many tokens so a run compiles a few cache shapes, not one per batch
GENERATION_PAD = 64
# method.args switches with which TRL samples through an engine other than transformers' generate, which
# compile_generation does not apply to
OTHER_SAMPLERS = ("use_vllm", "use_transformers_paged", "use_transformers_continuous_batching")

# Share of the GPU's free memory a micro-batch's activations may take, once the weights, gradients and
# optimizer state are counted (the rest is headroom for the allocator, kernels' workspaces, the reference).
ACTIVATION_SHARE = 0.5
# bytes per parameter held on the GPU while training every weight in bf16/fp16 (weights, gradients, two AdamW
# states) and with LoRA (frozen weights only); fp32 doubles them
STATE_BYTES = {"full": 8, "lora": 2}
# processes that collate batches on a GPU run, and the batches each keeps ready
DATALOADER_WORKERS = 2
DATALOADER_PREFETCH = 4
# tokens per micro-batch when nothing about the model or the GPU is known
FALLBACK_TOKENS = 16384
# the largest micro-batch chosen automatically, in tokens (beyond it a GPU is already saturated)
MAX_AUTO_TOKENS = 65536


@dataclass(frozen=True)
class Hardware:
    device: str  # cpu | cuda
    precision: str  # fp32 | bf16 | fp16
    # attn_implementation for model loading; None = the model's default
    attention: str | None = None
    liger: bool = False
    # Liger leaves a mixture's experts to transformers (and posttrain's grouped LoRA products): its expert
    # kernel would skip the LoRA adapters on the expert weights
    liger_skips_experts: bool = False
    packing: bool = False
    compile: bool = False
    fused_optimizer: bool = False
    # per-device rows per forward pass and gradient accumulation steps; None = the run's own settings
    micro_batch: int | None = None
    accumulation: int | None = None
    # tokens per micro-batch the micro-batch was sized from (None when it was not sized automatically)
    micro_batch_tokens: int | None = None
    precompute_reference: bool = False
    # optimizer steps trained on the completions of one generate call (TRL's steps_per_generation); None =
    # TRL's default (one step's worth per call)
    rollout_steps: int | None = None
    # grpo/rloo decode with a static KV cache, compiled (TRL's cache_implementation=static; transformers'
    # generate compiles the decoding step, which TRL's generation config disables)
    compile_generation: bool = False
    # processes that collate batches beside the training process (0: it collates them itself)
    dataloader_workers: int = 0
    # training processes of the job and how they share the work: None (one process), ddp or fsdp (FSDP2)
    processes: int = 1
    strategy: str | None = None
    # why each choice was made, knob -> short reason
    reasons: dict = field(default_factory=dict, compare=False)

    @property
    def dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def training_arguments(self) -> dict:
        """TrainingArguments fields every TRL config takes (common.py merges them under method.args)."""
        fields = {
            "use_cpu": self.device == "cpu",
            "bf16": self.precision == "bf16",
            "fp16": self.precision == "fp16",
        }
        if self.device == "cuda":
            # batches go to the GPU from pinned memory without the host waiting for the GPU to drain its queue
            # (a blocking copy would idle the GPU while the host collates the next batch)
            fields["accelerator_config"] = {"non_blocking": True}
        if self.liger:
            fields["use_liger_kernel"] = True
        if self.liger_skips_experts:
            fields["liger_kernel_config"] = {"swiglu": False}  # swiglu=False keeps Liger off the experts
        if self.fused_optimizer:
            fields["optim"] = "adamw_torch_fused"
        if self.compile:
            fields["torch_compile"] = True
        if self.dataloader_workers:
            # the next batches are collated in worker processes while the GPU trains, not between steps
            fields.update(dataloader_num_workers=self.dataloader_workers, dataloader_persistent_workers=True,
                          dataloader_prefetch_factor=DATALOADER_PREFETCH)
        if self.strategy == "fsdp":
            # FSDP2 through accelerate: each decoder layer (the model's _no_split_modules) is one sharded unit,
            # resharded after its forward; final/ is saved as one full state dict
            fields["fsdp"] = True
            fields["fsdp_config"] = {"version": 2, "reshard_after_forward": True, "state_dict_type": "FULL_STATE_DICT"}
        if self.micro_batch is not None:
            fields["per_device_train_batch_size"] = self.micro_batch
            fields["per_device_eval_batch_size"] = self.micro_batch
            fields["gradient_accumulation_steps"] = self.accumulation
        return fields

    def method_arguments(self, method: str) -> dict:
        """Fields of the method's own TRL config: packing for SFT/pretrain, the precomputed reference."""
        fields = {}
        if self.packing and _row(method).trainer == "trl:SFTTrainer":
            fields.update(packing=True, packing_strategy="bfd", padding_free=True)
        if self.precompute_reference and precomputes_reference(method):
            fields["precompute_ref_log_probs"] = True
        if self.rollout_steps and _row(method).batched_rollouts:
            fields["steps_per_generation"] = self.rollout_steps
        if self.compile_generation and _row(method).batched_rollouts:
            # prompts are padded for generate alone (methods/build.py), not through TRL's pad_to_multiple_of,
            # which would pad the training batch too
            fields["cache_implementation"] = "static"
        return fields

    def record(self) -> dict:
        """The resolved choices, for the run directory's hardware.json."""
        return {k: v for k, v in asdict(self).items()}

    def summary(self) -> str:
        parts = [f"{self.device} ({self.precision})"]
        for knob in ("attention", "liger", "packing", "compile", "fused_optimizer", "micro_batch",
                     "precompute_reference", "rollout_steps", "compile_generation", "dataloader_workers"):
            value = getattr(self, knob)
            if knob == "micro_batch" and value is not None:
                value = f"{value}x{self.accumulation}"
            reason = self.reasons.get(knob)
            parts.append(f"{knob}={value}" + (f" ({reason})" if reason else ""))
        if self.processes > 1:
            parts.append(f"processes={self.processes} {self.strategy} ({self.reasons.get('strategy')})")
        return "hardware: " + ", ".join(parts)


def _switch(value, knob: str) -> bool | None:
    """auto -> None; true/false (YAML booleans or strings) -> bool."""
    if value in (None, "auto"):
        return None
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise PosttrainError(f"hardware.{knob} must be auto, true or false, got {value!r}", f"set hardware.{knob}=auto")


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def gpu_free_bytes() -> int | None:
    try:
        return int(torch.cuda.mem_get_info()[0])
    except Exception:  # no CUDA, or no driver
        return None


def model_parameters(model_cfg: DictConfig | None) -> int | None:
    """Parameters of the model: the published count of its config, else an estimate from its architecture."""
    if model_cfg is None:
        return None
    if model_cfg.get("published_parameters"):
        return int(model_cfg.published_parameters)
    arch = model_cfg.get("architecture") or {}
    if not arch.get("hidden_size") or not arch.get("num_hidden_layers"):
        return None
    hidden, layers = int(arch.hidden_size), int(arch.num_hidden_layers)
    inner = int(arch.get("intermediate_size") or 4 * hidden)
    vocab = int(arch.get("vocab_size") or 0)
    return layers * (4 * hidden * hidden + 3 * hidden * inner) + vocab * hidden


def rollout_steps_for(batch_size: int | None) -> int:
    """Steps one generate call samples for on a GPU: ROLLOUT_STEPS, raised until the call samples
    ROLLOUT_COMPLETIONS sequences of `batch_size` rows a step, at most ROLLOUT_STEPS_MAX."""
    wanted = -(-ROLLOUT_COMPLETIONS // int(batch_size)) if batch_size else ROLLOUT_STEPS
    return max(ROLLOUT_STEPS, min(ROLLOUT_STEPS_MAX, wanted))


def _largest_divisor_at_most(total: int, limit: int) -> int:
    limit = max(1, min(total, limit))
    return next(d for d in range(limit, 0, -1) if total % d == 0)


def resolve_hardware(
    cfg: DictConfig,
    method: str = "sft",
    model_cfg: DictConfig | None = None,
    batch_size: int | None = None,
    accumulation: int | None = None,
    lora: bool = False,
    checkpointing: bool = False,
    method_args: DictConfig | dict | None = None,
) -> Hardware:
    """Resolve conf/hardware/ for one run: `cfg` is the hardware group; method, model group, batch size,
    accumulation steps, LoRA, activation checkpointing and the method's TRL args (its sampling engine) are
    what the throughput choices depend on."""
    device = training_device(cfg)
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if device == "cpu" and precision == "fp16":
        precision = "fp32"  # fp16 training needs a GPU grad scaler
    gpu = device == "cuda"
    reasons: dict[str, str] = {}

    def choose(knob: str, fast: bool, why_fast: str, why_not: str) -> bool:
        given = _switch(cfg.get(knob, "auto"), knob)
        if given is not None:
            reasons[knob] = "set"
            return given
        reasons[knob] = why_fast if fast else why_not
        return fast

    liger_ok = installed("liger_kernel")
    # Liger's expert kernel would skip peft's LoRA on a mixture's expert weights: it patches the rest only
    expert_lora = lora and mixture_of_experts(model_cfg)
    liger = choose("liger", gpu and liger_ok and not online(method),
                   "installed (not on the mixture's experts, whose weights LoRA adapts)" if expert_lora else "installed",
                   "not on a GPU" if not gpu else "liger-kernel not installed (pip install -e '.[gpu]')" if not liger_ok
                   else f"{method} samples most of its time, which Liger's patched model slows (measured)")
    packing = choose("packing", gpu and packs(method), "padding-free, per-example attention",
                     "not on a GPU" if not gpu else f"TRL pads {method} batches")
    compile_ = choose("compile", False, "", "compile time does not pay for short runs")
    fused = choose("fused_optimizer", gpu, "fused AdamW", "not on a GPU")
    precompute = choose("precompute_reference", gpu and precomputes_reference(method) and not lora,
                        "frozen reference scored once",
                        "not on a GPU" if not gpu else ("LoRA scores the base with adapters off" if lora
                                                        else f"TRL has no precomputed reference for {method}"))

    def count(knob: str, on_gpu: int | None, on_cpu: int | None, why_gpu: str, why_cpu: str) -> int | None:
        given = cfg.get(knob, "auto")
        if given != "auto":
            reasons[knob] = "set"
            return int(given)
        reasons[knob] = why_gpu if gpu else why_cpu
        return on_gpu if gpu else on_cpu

    batched = _row(method).batched_rollouts
    gpu_rollout = rollout_steps_for(batch_size)
    rollout_steps = count("rollout_steps", gpu_rollout, None,
                          f"one generate call samples {gpu_rollout} steps' completions (3.5x samples/s measured "
                          "at 4 steps)", "TRL's default on CPU") if batched else None
    sampler = next((key for key in OTHER_SAMPLERS if (method_args or {}).get(key)), None)
    compile_generation = choose("compile_generation", gpu and batched and not sampler,
                                "static KV cache, compiled decoding (GRPO 1.5-2.1x tokens/s measured)",
                                "grpo and rloo only" if not batched else f"method.args.{sampler} samples" if sampler
                                else "not on a GPU")
    if compile_generation and not batched:
        raise PosttrainError(f"hardware.compile_generation=true applies to grpo and rloo only, not {method}",
                             "set hardware.compile_generation=auto")
    if compile_generation and sampler:
        raise PosttrainError(f"hardware.compile_generation=true compiles transformers' generate, which "
                             f"method.args.{sampler} replaces", "set hardware.compile_generation=auto")
    workers = count("dataloader_workers", 0 if online(method) else DATALOADER_WORKERS, 0,
                    f"{method} samples most of its time; the training process collates" if online(method)
                    else "batches collate beside training (SFT +4.5% tokens/s measured)",
                    "the training process collates on CPU")

    attention = cfg.get("attention", "auto")
    if attention not in ("auto", *ATTENTIONS):
        raise PosttrainError(f"hardware.attention must be auto or one of {', '.join(ATTENTIONS)}, got {attention!r}",
                             "set hardware.attention=auto")
    if attention != "auto":
        reasons["attention"] = "set"
    elif not gpu:
        attention = None
        reasons["attention"] = "the model's default on CPU"
    elif installed("flash_attn") and torch.cuda.get_device_capability()[0] >= 8:
        attention = "flash_attention_2"
        reasons["attention"] = "flash-attn installed"
    elif packing and varlen_kernel_available():
        attention = "varlen"
        reasons["attention"] = "torch's FlashAttention-2 varlen kernel keeps packed examples apart (flash-attn not installed)"
    elif packing:
        attention = "flex_attention"
        reasons["attention"] = "block mask skips other examples' tokens in packed rows (torch has no varlen kernel)"
    else:
        attention = "sdpa"
        reasons["attention"] = "flash-attn not installed"
    if packing and attention == "sdpa":
        log.warning("hardware.packing with sdpa attends through a dense block-causal mask over the whole packed "
                    "micro-batch (correct but quadratic in its length); varlen, flex_attention or flash_attention_2 is faster")

    micro_batch = micro_tokens = accum = None
    wanted = cfg.get("micro_batch", "auto")
    budget = cfg.get("micro_batch_tokens", "auto")
    if batch_size is not None and not online(method) and (wanted != "auto" or gpu):
        accumulation = int(accumulation or 1)
        effective = int(batch_size) * accumulation  # per process; processes multiply both sides alike
        if wanted != "auto":
            limit = int(wanted)
            reasons["micro_batch"] = "set"
        else:
            row_tokens = int(model_cfg.max_length) * sequences_per_row(method) if model_cfg is not None else 1024
            if budget != "auto":
                micro_tokens = int(budget)
                reasons["micro_batch"] = f"hardware.micro_batch_tokens={micro_tokens}"
            else:
                micro_tokens, reasons["micro_batch"] = _token_budget(model_cfg, liger, lora, precision, checkpointing,
                                                                     full_logits(method, packing))
            limit = max(1, micro_tokens // row_tokens)
        micro_batch = _largest_divisor_at_most(effective, limit)
        accum = effective // micro_batch
        reasons["micro_batch"] += f"; effective batch {effective} per process kept"
    processes = job_processes(cfg)
    strategy = None
    if processes > 1:
        strategy = _strategy(cfg.get("strategy", "auto"), model_cfg, lora, precision, gpu, reasons)
        each = f"{micro_batch or batch_size}x{accum or accumulation or 1}"
        reasons["strategy"] += f"; effective batch {each}x{processes} processes"
    return Hardware(
        device=device, precision=precision, attention=attention, liger=liger,
        liger_skips_experts=liger and expert_lora, packing=packing,
        compile=compile_, fused_optimizer=fused, micro_batch=micro_batch, accumulation=accum,
        micro_batch_tokens=micro_tokens, precompute_reference=precompute, rollout_steps=rollout_steps,
        compile_generation=compile_generation,
        dataloader_workers=workers, processes=processes, strategy=strategy, reasons=reasons,
    )


# auto picks FSDP2 when a full copy of the model's training state (weights, gradients, AdamW states) would
# take more than this share of one GPU: the rest is for activations
FSDP_STATE_SHARE = 0.6


def _strategy(wanted: str, model_cfg: DictConfig | None, lora: bool, precision: str, gpu: bool,
              reasons: dict) -> str:
    """ddp or fsdp for a job of several processes (hardware.strategy)."""
    if wanted != "auto":
        reasons["strategy"] = "set"
        return wanted
    params = model_parameters(model_cfg)
    total = torch.cuda.get_device_properties(0).total_memory if gpu and torch.cuda.is_available() else None
    if params is None or total is None:
        reasons["strategy"] = "each process holds the whole model"
        return "ddp"
    state = params * STATE_BYTES["lora" if lora else "full"] * (2 if precision == "fp32" else 1)
    if state > FSDP_STATE_SHARE * total:
        reasons["strategy"] = (f"a full copy of the training state ({state / 2**30:.0f} GiB) leaves too little of one "
                               f"{total / 2**30:.0f} GiB GPU: sharded")
        return "fsdp"
    reasons["strategy"] = f"the training state ({state / 2**30:.0f} GiB) fits each GPU"
    return "ddp"


def _token_budget(model_cfg: DictConfig | None, liger: bool, lora: bool, precision: str,
                  checkpointing: bool, logits: bool = False) -> tuple[int, str]:
    """Tokens per micro-batch whose activations (the plan's memory model, posttrain.plan), and full logits
    for a trainer without a fused LM head, fit ACTIVATION_SHARE of the GPU's free memory beside the training
    state, rounded down to a power of two."""
    free = gpu_free_bytes()
    params = model_parameters(model_cfg)
    arch = (model_cfg.get("architecture") if model_cfg is not None else None) or {}
    if free is None or params is None or not arch.get("hidden_size") or not arch.get("num_hidden_layers"):
        return FALLBACK_TOKENS, "model size or free GPU memory unknown"
    shape = model_shape(arch)
    per_token = activation_bytes_per_token(shape, precision, liger, checkpointing)
    if logits and shape["V"]:
        per_token += shape["V"] * LOGIT_BYTES
    scale = 2 if precision == "fp32" else 1
    state = params * STATE_BYTES["lora" if lora else "full"] * scale
    room = free * ACTIVATION_SHARE - state
    tokens = int(room // per_token) if room > 0 else 0
    tokens = min(MAX_AUTO_TOKENS, max(1024, 1 << max(tokens, 1).bit_length() - 1))
    return tokens, f"{tokens} tokens from {free / 2**30:.0f} GiB free and {params / 1e9:.2f}B parameters"
