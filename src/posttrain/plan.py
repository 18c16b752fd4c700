"""`python -m posttrain <overrides> plan=true`: what a run will take, from its config alone.

The model is built on PyTorch's meta device (shapes, no weights), so a plan for Qwen3-30B-A3B takes
seconds on a laptop. The plan states the parameters (all, trainable, active per token), the throughput
choices of the hardware group (micro-batch, accumulation, attention, packing), the estimated peak GPU
memory per device and its parts, the tokens of one epoch and the hours at the expected speed.

Peak memory per device, in bytes (b = 2 for bf16/fp16 weights, 4 for fp32; T = tokens of one micro-batch,
h = hidden size, q = heads x head_dim, kv = key/value heads x head_dim, i = MLP width, L = layers, V = vocab):
- weights: b x N (QLoRA: 0.5625 bytes for each weight of a quantized linear layer, b for the rest)
- full fine-tuning: gradients b x N and AdamW's two states 2 x b x N
- LoRA: adapters in fp32 with their gradients and AdamW states, 16 bytes per adapter parameter
- activations kept for the backward pass, per token and layer (SDPA/flash/flex attention keep no score
  matrix): b x (4h + 3q + 2kv + 4i), plus 8h for the fp32 copies of the unfused RMSNorm (Liger fuses it,
  and its SwiGLU keeps gate and up but not their product's two intermediates: 3i); LoRA's dropout keeps a
  copy of each adapted layer's input. With activation checkpointing only each layer's input (b x h) is
  kept, plus one layer's activations while it is recomputed.
- logits, by how the trainer scores tokens (the registry row's lm_head): TRL's fused LM head (SFT, DPO, KTO,
  GRPO, RLOO in TRL 1.16) projects 4,096 tokens x 32,768 vocabulary entries at a time (b each) and keeps
  fp32 gradients of the hidden states (4 x T x h) and, when the head trains, of its weight (4 x V x h);
  Liger's fused linear cross-entropy a 4,096-token chunk of T x V x 10 bytes; otherwise all of them
  (bf16 logits, their fp32 copy and the fp32 gradient); a classification head none
- reference model (DPO/KTO full fine-tuning scored on the fly): b x N again
- hardware.strategy=fsdp over P processes: weights, gradients and AdamW states divided by P
A normal run on a GPU whose plan exceeds the GPU's memory stops before loading the model (check_fits).
"""

from __future__ import annotations

import copy

import logging
import math
import re
from dataclasses import dataclass, field, replace

import torch
from omegaconf import DictConfig, OmegaConf

from posttrain.errors import PosttrainError
from posttrain.memory import LOGIT_BYTES, activation_bytes_per_token, model_shape

log = logging.getLogger(__name__)

GIB = 2**30
# 4-bit NF4 weight plus its double-quantized absmax scale (one fp8 per 64 weights, one fp32 per 256 blocks)
QLORA_BYTES_PER_WEIGHT = 0.5625
# Liger's fused linear cross-entropy materialises the logits of this many tokens at a time
LIGER_LOGIT_CHUNK_TOKENS = 4096
# TRL's fused LM head (trl.kernels.chunked_logprob): tokens x vocabulary entries of one projection tile
TRL_HEAD_TILE = (4096, 32768)
# allocator rounding, kernels' workspaces and the optimizer step's temporaries, as a share of the rest
OVERHEAD = 0.10
# model FLOPs utilisation the hours are estimated at (benchmarks/gpu_throughput.py measures it)
EXPECTED_MFU = 0.30
# the GPU a plan assumes when none is present: (name, memory in bytes, dense bf16 FLOP/s)
ASSUMED_GPU = ("NVIDIA H100 80GB HBM3", 80 * 10**9, 989e12)


@dataclass
class Memory:
    """Estimated peak bytes on one device, by what holds them."""

    weights: float = 0.0
    gradients: float = 0.0
    optimizer: float = 0.0
    activations: float = 0.0
    logits: float = 0.0
    reference: float = 0.0

    @property
    def total(self) -> float:
        parts = self.weights + self.gradients + self.optimizer + self.activations + self.logits + self.reference
        return parts * (1 + OVERHEAD)


@dataclass
class Plan:
    model: str
    method: str
    parameters: int
    trainable: int
    active: int
    micro_batch: int
    accumulation: int
    tokens_per_micro_batch: int
    memory: Memory
    hardware_summary: str
    gpu: tuple[str, float, float]
    rows: int | None = None
    tokens_per_epoch: int | None = None
    epochs: float = 1.0
    checkpointing: bool = False
    notes: list[str] = field(default_factory=list)

    def hours(self, flops_per_token: float) -> float | None:
        if not self.tokens_per_epoch:
            return None
        tokens_per_second = EXPECTED_MFU * self.gpu[2] / flops_per_token
        return self.tokens_per_epoch * self.epochs / tokens_per_second / 3600

    def lines(self, flops_per_token: float) -> list[str]:
        m = self.memory
        gib = lambda b: f"{b / GIB:.1f} GiB"  # noqa: E731
        lines = [
            f"model: {self.model}, {self.parameters / 1e6:,.1f}M parameters ({self.active / 1e6:,.1f}M active per "
            f"token), {self.trainable / 1e6:,.2f}M trainable; method {self.method}",
            self.hardware_summary,
            f"micro-batch: {self.micro_batch} rows x {self.accumulation} accumulation steps, up to "
            f"{self.tokens_per_micro_batch:,} tokens per forward pass",
            f"peak GPU memory per device: {gib(m.total)} (weights {gib(m.weights)}, gradients {gib(m.gradients)}, "
            f"optimizer {gib(m.optimizer)}, activations {gib(m.activations)}, logits {gib(m.logits)}, "
            f"reference {gib(m.reference)}, +{OVERHEAD:.0%} overhead) on {self.gpu[0]} ({self.gpu[1] / GIB:.0f} GiB)",
        ]
        if self.tokens_per_epoch is not None:
            hours = self.hours(flops_per_token)
            lines.append(f"data: {self.rows:,} rows, {self.tokens_per_epoch:,} tokens per epoch; about {hours:.2f} h "
                         f"for {self.epochs:g} epoch(s) at {EXPECTED_MFU:.0%} MFU")
        return lines + [f"note: {note}" for note in self.notes]


# --- the model on the meta device ----------------------------------------------------------------------

def model_config(model_cfg: DictConfig, head: str):
    """The transformers config of `model_cfg`: its architecture, or the config.json of a local model."""
    from transformers import AutoConfig

    from posttrain.models.loading import HEAD_KWARGS, resolve_path, uses_random_init
    from posttrain.models.tiny import byte_level_tokenizer

    architecture = OmegaConf.to_container(model_cfg.architecture, resolve=True) if model_cfg.get("architecture") else None
    path = resolve_path(model_cfg.path) if model_cfg.path else None
    if architecture and (uses_random_init(model_cfg) or not path or not _has_config(path)):
        model_type = architecture.pop("model_type")
        if model_cfg.tokenizer in (None, "byte") and (uses_random_init(model_cfg) or "vocab_size" not in architecture):
            tokenizer = byte_level_tokenizer(model_cfg.max_length)  # as models/loading.py sizes it
            architecture.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
        return AutoConfig.for_model(model_type, **architecture, **HEAD_KWARGS[head])
    if path and _has_config(path):
        return AutoConfig.from_pretrained(path, trust_remote_code=bool(model_cfg.trust_remote_code), **HEAD_KWARGS[head])
    raise PosttrainError(
        f"plan=true needs the architecture of model {model_cfg.name} (no model.architecture, and {path} has no "
        "config.json)",
        "give model.path a local model directory, or model.architecture as in conf/model/qwen3-4b.yaml",
    )


def _has_config(path: str) -> bool:
    from pathlib import Path

    return (Path(path) / "config.json").is_file()


def meta_model(model_cfg: DictConfig, head: str):
    from posttrain.models.loading import HEADS

    config = model_config(model_cfg, head)
    with torch.device("meta"):
        return HEADS[head].from_config(config)


def linear_shapes(model, targets) -> list[tuple[int, int]]:
    """(in, out) of the linear layers `targets` names (all-linear: every one but the output head)."""
    pattern = None if targets == "all-linear" else re.compile("|".join(rf"(^|\.){re.escape(t)}$" for t in targets))
    head = model.get_output_embeddings()
    return [(module.in_features, module.out_features) for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head and (pattern is None or pattern.search(name))]


def adapter_parameters(model, lora_config) -> tuple[int, int, list[tuple[int, int]]]:
    """What peft adds to the meta-device `model` (in place) for `lora_config`: every adapter parameter, those one
    token is multiplied by (posttrain.speed: a mixture's expert adapters for the routed experts only), and the
    (in, out) shapes of the adapted linear layers whose input LoRA dropout copies. peft itself decides what
    all-linear adapts (on a mixture of experts also the fused 3-D expert weights, through target_parameters)."""
    from peft import get_peft_model

    from posttrain.speed import multiplied_adapter_parameters, trainable_parameters

    with torch.device("meta"):
        peft_model = get_peft_model(model, copy.deepcopy(lora_config))
    dropped = [(module.in_features, module.out_features) for module in peft_model.modules()
               if isinstance(getattr(module, "lora_dropout", None), torch.nn.ModuleDict)
               and isinstance(getattr(module, "base_layer", None), torch.nn.Linear)
               and any(not isinstance(d, torch.nn.Identity) for d in module.lora_dropout.values())]
    return trainable_parameters(peft_model), multiplied_adapter_parameters(peft_model), dropped


def active_parameters(model) -> int:
    """Parameters one token is multiplied by: a mixture of experts counts its routed experts only."""
    total = sum(p.numel() for p in model.parameters())
    config = model.config
    experts, routed = getattr(config, "num_experts", None), getattr(config, "num_experts_per_tok", None)
    if experts and routed:
        expert = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
        total -= expert - expert * routed // experts
    return total


# --- the estimate --------------------------------------------------------------------------------------

def estimate_memory(shape: dict[str, int], parameters: int, trainable: int, lora: bool, qlora_share: float,
                    tokens: int, precision: str, liger: bool, checkpointing: bool, reference: bool,
                    adapted: list[tuple[int, int]], lm_head: str | None = None) -> Memory:
    """lm_head: trl_fused, liger, plain or none (a classification head); None = liger or plain by `liger`."""
    b = 4 if precision == "fp32" else 2
    h, V = shape["h"], shape["V"]
    memory = Memory()
    if qlora_share:
        memory.weights = parameters * (qlora_share * QLORA_BYTES_PER_WEIGHT + (1 - qlora_share) * b)
    else:
        memory.weights = parameters * b
    if lora:
        memory.optimizer = trainable * 16  # fp32 adapter weights' gradients and two AdamW states (+ the weights)
    else:
        memory.gradients = parameters * b
        memory.optimizer = 2 * parameters * b
    memory.activations = tokens * activation_bytes_per_token(shape, precision, liger, checkpointing,
                                                             adapted if lora else ())
    lm_head = lm_head or ("liger" if liger else "plain")
    if lm_head == "trl_fused":
        tile = min(tokens, TRL_HEAD_TILE[0]) * min(V, TRL_HEAD_TILE[1]) * b
        memory.logits = tile + 4 * tokens * h + (0 if lora else 4 * V * h)
    elif lm_head == "liger":
        memory.logits = min(tokens, LIGER_LOGIT_CHUNK_TOKENS) * V * LOGIT_BYTES
    elif lm_head == "plain":
        memory.logits = tokens * V * LOGIT_BYTES
    if reference:
        memory.reference = parameters * b
    return memory


def _lm_head(method, packing: bool) -> str:
    """How the method's trainer scores tokens: TRL's fused LM head (also TRL's experimental CPO/ORPO when
    their padding-free trainers run), full logits (those trainers padded, Liger or not), or a classification
    head."""
    if method.head != "causal_lm":
        return "none"
    return "trl_fused" if method.fused_lm_head or (packing and method.padding_free_trainer) else "plain"


# an online method's prompt length in tokens when neither the data nor the run says it
ASSUMED_PROMPT_TOKENS = 128


def sequence_tokens(cfg: DictConfig, method, prompt_tokens: int | None = None) -> int:
    """The longest sequence a micro-batch row holds: model.max_length, or for a method that samples while
    training its prompt and its sampled completion (the longest prompt when known)."""
    cap = int(cfg.model.max_length)
    if not method.samples_while_training:
        return cap
    args = cfg.method.get("args") or {}
    completion = args.get("max_completion_length") or args.get("max_new_tokens") or cap
    return min(cap, int(completion) + int(prompt_tokens or ASSUMED_PROMPT_TOKENS))


def longest_prompt(rows, count, limit: int = 1000) -> int | None:
    """Tokens of the longest prompt among the first `limit` rows (None when the rows have no prompt)."""
    lengths = [count(_text(row.get("prompt"))) for row in rows.select(range(min(len(rows), limit)))
               if row.get("prompt") is not None]
    return max(lengths) if lengths else None


def make_plan(cfg: DictConfig, hardware=None, with_data: bool = True,
              prompt_tokens: int | None = None) -> tuple[Plan, float]:
    """The plan of one composed run config and its model FLOPs per trained token; `hardware`: the run's
    resolved hardware group (resolved here when not given); `prompt_tokens`: the data's longest prompt
    (read from the data when with_data)."""
    from posttrain import adapters
    from posttrain.hardware import precomputes_reference, resolve_hardware, sequences_per_row
    from posttrain.registry import get_method
    from posttrain.speed import flops_per_token, sampling_forward_passes

    method = get_method(cfg.method.name)
    lora = adapters.uses_lora(cfg.peft, int(cfg.lora_rank))
    model = meta_model(cfg.model, method.head)
    shape = model_shape(model.config)
    parameters = sum(p.numel() for p in model.parameters())
    active = active_parameters(model)
    qlora_share = 0.0
    if lora and cfg.peft.get("load_in_4bit", False):  # bitsandbytes quantizes the linear layers' weights
        qlora_share = sum(i * o for i, o in linear_shapes(model, "all-linear")) / parameters
    adapter = adapter_active = 0
    adapted: list[tuple[int, int]] = []
    if lora:
        adapter, adapter_active, adapted = adapter_parameters(model, adapters.lora_config(
            cfg.peft, int(cfg.lora_rank), method.head, adapters.mixture_of_experts(cfg.model)))
    if hardware is None:
        hardware = resolve_hardware(cfg.hardware, method.name, cfg.model, int(cfg.batch_size),
                                    int(cfg.training.gradient_accumulation_steps), lora,
                                    checkpointing=bool(cfg.training.gradient_checkpointing),
                                    method_args=cfg.method.get("args"))
    micro_batch = hardware.micro_batch or int(cfg.batch_size)
    accumulation = hardware.accumulation or int(cfg.training.gradient_accumulation_steps)
    sequences = sequences_per_row(method.name)
    rows = tokens_per_epoch = None
    if with_data:
        rows, tokens_per_epoch, prompt_tokens = _data_size(cfg, method)
    sequence = sequence_tokens(cfg, method, prompt_tokens)
    tokens = micro_batch * sequence * sequences
    reference = method.reference and not lora and not (hardware.precompute_reference and precomputes_reference(method.name))
    memory = estimate_memory(shape, parameters, adapter, lora, qlora_share, tokens, hardware.precision,
                             hardware.liger, bool(cfg.training.gradient_checkpointing), reference, adapted,
                             lm_head=_lm_head(method, hardware.packing))
    if hardware.strategy == "fsdp":  # FSDP2 keeps 1/processes of the weights, gradients and AdamW states per GPU
        memory = replace(memory, weights=memory.weights / hardware.processes,
                         gradients=memory.gradients / hardware.processes, optimizer=memory.optimizer / hardware.processes)
    gpu = _gpu()
    plan = Plan(
        model=cfg.model.name, method=method.name, parameters=parameters, trainable=adapter or parameters,
        active=active, micro_batch=micro_batch, accumulation=accumulation, tokens_per_micro_batch=tokens,
        memory=memory, hardware_summary=hardware.summary(), gpu=gpu, epochs=float(cfg.num_epochs),
        checkpointing=bool(cfg.training.gradient_checkpointing),
    )
    if gpu[0] == ASSUMED_GPU[0] and not torch.cuda.is_available():
        plan.notes.append(f"no GPU here: memory and hours are for one {gpu[0]}")
    if method.samples_while_training:
        plan.notes.append(f"sequences of {sequence} tokens: the longest prompt "
                          f"({prompt_tokens or f'assumed {ASSUMED_PROMPT_TOKENS}'}) and the sampled completion")
    iterations = int((cfg.method.get("args") or {}).get("num_iterations", 1)) if method.batched_rollouts else 1
    passes = int(reference) + sampling_forward_passes(method.name, accumulation, hardware.rollout_steps, iterations)
    token_flops = flops_per_token(active, shape["L"], shape["heads"], shape["head_dim"], sequence,
                                  adapter_parameters=adapter_active if lora else 0, forward_passes=passes,
                                  training_passes=iterations)
    if with_data:
        plan.rows, plan.tokens_per_epoch = rows, tokens_per_epoch
    return plan, token_flops


def _gpu() -> tuple[str, float, float]:
    if not torch.cuda.is_available():
        return ASSUMED_GPU
    from posttrain.speed import gpu_peak_flops

    name = torch.cuda.get_device_name()
    return name, float(torch.cuda.get_device_properties(0).total_memory), gpu_peak_flops(name) or ASSUMED_GPU[2]


def _data_size(cfg: DictConfig, method) -> tuple[int, int, int | None]:
    """Rows of the train split, their tokens (the tokenizer's count on up to 2,000 rows, scaled; a hub
    tokenizer that cannot load offline counts 4 characters a token), each row capped at model.max_length,
    and the longest prompt's tokens."""
    from posttrain.data.loading import load_data
    from posttrain.models.loading import load_tokenizer, tokenizer_identity

    data = load_data(cfg.dataset, method, int(cfg.seed), tokenizer_identity(cfg.model))
    rows = len(data.train)
    sample = data.train.select(range(min(rows, 2000)))
    try:
        tokenizer = load_tokenizer(cfg.model)
        count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    except PosttrainError:
        count = lambda text: math.ceil(len(text) / 4)  # noqa: E731
    cap = int(cfg.model.max_length)
    total = 0
    for row in sample:
        texts = [_text(row.get(k)) for k in ("prompt", "completion", "chosen", "rejected", "text", "messages")]
        total += min(cap, sum(count(t) for t in texts if t))
    return rows, int(total * rows / max(1, len(sample))), longest_prompt(sample, count)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # conversational rows
        return " ".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value)
    return str(value)


def check_fits(plan: Plan) -> None:
    """Stop before loading the model when not even one row per micro-batch fits the GPU (the estimate takes
    rows of model.max_length, so a fuller micro-batch over the memory only warns: real rows are often shorter)."""
    m, total = plan.memory, plan.gpu[1]
    state = m.weights + m.gradients + m.optimizer + m.reference
    one_row = (state + (m.activations + m.logits) / plan.micro_batch) * (1 + OVERHEAD)
    if m.total > total and one_row <= total:
        log.warning("the plan estimates %.0f GiB per GPU for micro-batches of %d full-length rows, over the %.0f GiB "
                    "of %s; shorter rows may fit (hardware.micro_batch=... lowers it)",
                    m.total / GIB, plan.micro_batch, total / GIB, plan.gpu[0])
    if one_row <= total:
        return
    fixes = []
    if m.activations > m.weights and not plan.checkpointing:
        fixes.append("training.gradient_checkpointing=true")
    if plan.trainable == plan.parameters:
        fixes.append("lora_rank=16 (LoRA)")
    fixes += ["peft=qlora lora_rank=16", "more GPUs"]
    raise PosttrainError(
        f"the run needs about {one_row / GIB:.0f} GiB per GPU even one row at a time, but {plan.gpu[0]} has "
        f"{total / GIB:.0f} GiB (python -m posttrain ... plan=true shows the parts)",
        "use " + ", or ".join(fixes),
    )


def print_plan(overrides: list[str], config_name: str, multirun: bool) -> bool:
    """plan=true: print the plan of each config the command trains (each stage of a pipeline) and return
    True; False when the command line does not ask for a plan."""
    from posttrain.compose import configs_to_run, override_key

    if not any(override_key(o) == "plan" and o.split("=", 1)[-1].lower() == "true" for o in overrides):
        return False  # a command line that does not ask for a plan (sweeps included) composes nothing here
    if multirun:
        raise PosttrainError("plan=true plans one run, not a sweep", "drop --multirun and give one value per key")
    cfg, configs = configs_to_run(overrides, config_name)
    for label, run_cfg in configs:
        plan, token_flops = make_plan(run_cfg)
        print(f"plan ({label}):" if len(configs) > 1 else "plan:")
        for line in plan.lines(token_flops):
            print(f"  {line}")
    return True
