"""Speed figures for metrics.jsonl on a GPU: model FLOPs utilisation (MFU) and peak memory.

MFU is the share of the GPUs' dense bf16 peak that the model's own arithmetic uses:

    mfu_percent = 100 * tokens_per_second * flops_per_token / (peak_flops_per_gpu * gpus)

with tokens_per_second the real (non-pad) tokens the trainer counted on all processes, and, per token
(PaLM's convention, Chowdhery et al. 2022, appendix B):

    full fine-tuning      6N                    forward 2N, backward 4N
    LoRA / QLoRA          4N + 6N_adapter       the frozen base: forward 2N and the activation gradients 2N,
                                                no weight gradients; the adapters: the full 6 per parameter
    attention             + 12 * L * H * Q * T  the QK^T and attention-times-V products (4LHQT forward, twice
                                                that backward), L layers, H query heads of width Q, T tokens
    reference forward     + 2N + 4 * L * H * Q * T   DPO and KTO with a reference model, GRPO/RLOO with a KL
                                                penalty; none when the reference log-probs are precomputed
    sampling (GRPO, RLOO) + 2N + 4 * L * H * Q * T   generating the tokens: the prompt's prefill and one
                                                decode step per completion token, each a forward pass
    old log-probs         + 2N + 4 * L * H * Q * T   TRL scoring the sampled tokens under the sampling policy:
                                                RLOO always, GRPO when one generate call feeds more than one
                                                optimizer step (hardware.rollout_steps > 1)

GRPO and RLOO count a sampled token once, when it is generated, and train on it method.args.num_iterations
times: the training terms (6N or the LoRA terms, and the attention) are counted that many times.

N counts the weights each token is multiplied by: every parameter, the output head included, except the
input embedding table when it is not tied to the head (a lookup, no arithmetic), and for a mixture of
experts only the experts a token is routed to (their adapters likewise). T is model.max_length, the
longest sequence: for shorter rows the attention term is an upper bound (for Qwen2.5-0.5B at T=1024 it is 9% of 6N). A forward pass the
method needs is counted whether it trains or not (a reference's, sampling's); activation recomputation
(gradient checkpointing) is not: MFU measures the model arithmetic the method needs, not what the GPU
executed. An unknown GPU, or a CPU, gives no MFU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

# Dense (no sparsity) bf16 tensor-core peak FLOP/s per GPU from NVIDIA's datasheets, matched in order against
# torch.cuda.get_device_name() (e.g. "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA L40S").
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    (r"\bB200\b", 2250e12),
    (r"\bH200 NVL\b", 835e12),
    (r"\bH200\b", 989e12),
    (r"\bGH200\b", 989e12),
    (r"\bH100\b.*\bPCIe\b", 756e12),
    (r"\bH100 NVL\b", 835e12),
    (r"\bH100\b", 989e12),  # SXM5 ("H100 80GB HBM3")
    (r"\bH800\b.*\bPCIe\b", 756e12),
    (r"\bH800\b", 989e12),
    (r"\bA100\b", 312e12),
    (r"\bA800\b", 312e12),
    (r"\bL40S\b", 362e12),
    (r"\bL40\b", 181e12),
    (r"\bL4\b", 121e12),
    (r"\bA10G\b", 125e12),  # AWS's A10 variant; NVIDIA's A10 datasheet figure
    (r"\bA10\b", 125e12),
    (r"\bA40\b", 150e12),
    (r"\bRTX 4090\b", 165e12),
)

GIB = 2**30


def gpu_peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of the GPU named `device_name`, None when it is not in the table."""
    for pattern, flops in PEAK_BF16_FLOPS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return flops
    return None


def flops_per_token(
    parameters: int,
    layers: int,
    heads: int,
    head_dim: int,
    seq_len: int,
    adapter_parameters: int = 0,
    forward_passes: int = 0,
    training_passes: int = 1,
) -> float:
    """Model FLOPs of one counted token (the module docstring gives the terms); adapter_parameters > 0
    means LoRA: the base's `parameters` are frozen and only the adapters get weight gradients;
    forward_passes counts the forward passes without a backward over each token (a reference's, sampling's),
    training_passes the forward and backward passes that train on it."""
    attention_forward = 4 * layers * heads * head_dim * seq_len
    if adapter_parameters:
        weights = 4 * parameters + 6 * adapter_parameters
    else:
        weights = 6 * parameters
    total = training_passes * (weights + 3 * attention_forward)
    total += forward_passes * (2 * parameters + attention_forward)
    return float(total)


def mfu_percent(tokens_per_second: float, token_flops: float, peak_flops: float, gpus: int = 1) -> float:
    """Model FLOPs utilisation in percent of `gpus` GPUs' combined peak."""
    return 100.0 * tokens_per_second * token_flops / (peak_flops * gpus)


def multiplied_parameters(model) -> int:
    """N of the module docstring for a loaded transformers model (before LoRA adapters are added)."""
    def size(param) -> int:
        quant = getattr(param, "quant_state", None)  # bitsandbytes 4-bit weights are stored packed
        if quant is not None:
            return int(torch.Size(quant.shape).numel())
        return int(getattr(param, "ds_numel", param.numel()))  # DeepSpeed ZeRO-3 keeps the full size here

    named = dict(model.named_parameters())  # tied weights appear once
    total = sum(size(p) for name, p in named.items() if "lora_" not in name)
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    if embedding is not None and (head is None or head.weight is not embedding.weight):
        total -= size(embedding.weight)
    config = model.config
    experts, routed = getattr(config, "num_experts", None), getattr(config, "num_experts_per_tok", None)
    if experts and routed:
        expert_params = sum(size(p) for name, p in named.items() if ".experts." in name)
        total -= expert_params - expert_params * routed // experts
    return total


def trainable_parameters(model) -> int:
    return sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters() if p.requires_grad)


def multiplied_adapter_parameters(model) -> int:
    """N_adapter of the module docstring: the trainable weights one token is multiplied by. On a mixture of
    experts peft gives every expert its own adapter (target_parameters), and a token meets only those of the
    experts it is routed to."""
    config = model.config
    experts, routed = getattr(config, "num_experts", None), getattr(config, "num_experts_per_tok", None)
    total = 0
    for name, param in model.named_parameters():
        if param.requires_grad:
            size = int(getattr(param, "ds_numel", param.numel()))
            total += size * routed // experts if experts and routed and ".experts." in name else size
    return total


def uses_reference_forward(method: str, args) -> bool:
    """Whether each training step also runs a reference model forward (`args`: the method's TRL config)."""
    if getattr(args, "precompute_ref_log_probs", False):
        return False
    from posttrain.registry import get_method

    row = get_method(method)  # the registry row says whether the trainer scores a reference
    if row.reference:
        return True
    if row.builds_reference:
        return float(getattr(args, "beta", 0.0) or 0.0) > 0.0
    return False


def sampling_forward_passes(method: str, accumulation: int, steps_per_generation: int | None = None,
                            num_iterations: int = 1, importance_sampling: bool = False) -> int:
    """Forward passes over each trained token that an online method's sampling adds: generating it, and TRL's
    log-probabilities of the sampled tokens under the sampling policy, which RLOO always computes and GRPO
    when its generate calls and optimizer steps are not aligned or vLLM's sampling is corrected."""
    from posttrain.registry import get_method

    if not get_method(method).batched_rollouts:
        return 0
    every = (steps_per_generation or accumulation) * num_iterations
    old_log_probs = method == "rloo" or accumulation % every != 0 or importance_sampling
    return 1 + int(old_log_probs)


def training_passes(method: str, args) -> int:
    """How many times each counted token is trained on: TRL counts an online method's sampled tokens once, at
    generation, and trains on them method.args.num_iterations times."""
    from posttrain.registry import get_method

    if args is None or not get_method(method).batched_rollouts:
        return 1
    return int(getattr(args, "num_iterations", 1) or 1)


def forward_passes(method: str, args) -> int:
    """The forward passes without a backward over each trained token (`args`: the method's TRL config)."""
    sampling = 0
    if args is not None:
        sampling = sampling_forward_passes(
            method, int(getattr(args, "gradient_accumulation_steps", 1) or 1),
            getattr(args, "steps_per_generation", None), int(getattr(args, "num_iterations", 1) or 1),
            bool(getattr(args, "use_vllm", False) and getattr(args, "vllm_importance_sampling_correction", False)))
    return int(uses_reference_forward(method, args)) + sampling


def peak_memory_gib() -> float:
    """The most GPU memory this process has had allocated on any one of its GPUs, in GiB."""
    return max(torch.cuda.max_memory_allocated(d) for d in range(torch.cuda.device_count())) / GIB


@dataclass
class GpuSpeed:
    """What MetricsLog adds to a GPU run's lines: mfu_percent (on a GPU of the table) and peak_memory_gib."""

    method: str
    parameters: int  # N, counted on the loaded model
    layers: int
    heads: int
    head_dim: int
    seq_len: int
    lora: bool  # adapters train over a frozen base
    peak_flops: float | None  # per GPU; None = a GPU the table does not know (no MFU)
    token_flops: float | None = None  # set when training starts, from the trainable weights and the TRL config
    gpus: int = 1

    @classmethod
    def for_model(cls, model, method: str, seq_len: int, lora: bool) -> "GpuSpeed":
        """From the loaded model (before the trainer adds adapters) on this process's GPU."""
        config = model.config
        heads = int(getattr(config, "num_attention_heads", 0) or 0)
        head_dim = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else 0)
        return cls(
            method=method,
            parameters=multiplied_parameters(model),
            layers=int(getattr(config, "num_hidden_layers", 0) or 0),
            heads=heads,
            head_dim=int(head_dim),
            seq_len=int(seq_len),
            lora=lora,
            peak_flops=gpu_peak_flops(torch.cuda.get_device_name()),
        )

    def start(self, args, model) -> None:
        """At train begin: the model the trainer trains (adapters added) and its TRL config are known."""
        self.token_flops = flops_per_token(
            self.parameters, self.layers, self.heads, self.head_dim, self.seq_len,
            adapter_parameters=multiplied_adapter_parameters(model) if self.lora and model is not None else 0,
            forward_passes=forward_passes(self.method, args), training_passes=training_passes(self.method, args),
        )
        self.gpus = int(getattr(args, "world_size", 1) or 1)

    def mfu(self, tokens_per_second: float) -> float | None:
        if self.peak_flops is None or self.token_flops is None:
            return None
        return mfu_percent(tokens_per_second, self.token_flops, self.peak_flops, self.gpus)
