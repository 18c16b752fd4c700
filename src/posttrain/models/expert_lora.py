"""LoRA on a mixture of experts without forming full-size weight updates.

transformers stores a layer's experts as two 3-D weights (gate_up_proj [E, 2I, H], down_proj [E, H, I]) and
peft adapts them through `target_parameters`: a stack of ParamWrappers that, on every forward, writes
W + s B A for all E experts of the layer (a full copy of the layer's expert weights) and takes the gradient
of that whole copy in backward. On Qwen3-30B-A3B that is 29B weights written and read per pass.

`install` keeps peft's adapters (the same parameters, state dict, saving and merging) and changes only how
the adapted experts run: each routed token goes through  x W_e^T + s (x A_e^T) B_e^T  with grouped matrix
products over the tokens sorted by expert, so the adapter costs two rank-r products per token. Anything
this path does not cover (several active adapters, merged or disabled adapters, biases, transposed or
expert-parallel weights) falls back to peft's own forward.
"""

from __future__ import annotations

import logging
import types

import torch

log = logging.getLogger(__name__)

# set on a patched outer ParamWrapper: the wrappers of its stack, outermost first
ATTRIBUTE = "_posttrain_expert_lora_stack"
ADAPTED = ("gate_up_proj", "down_proj")


def install(model: torch.nn.Module) -> int:
    """Route every peft-adapted experts module of `model` through grouped LoRA products; returns how many."""
    try:
        from peft.tuners.lora.layer import ParamWrapper
    except ImportError:
        return 0
    wrappers = [m for m in model.modules() if isinstance(m, ParamWrapper)]
    inner = {id(w.base_layer) for w in wrappers}
    ranks = []
    for outer in wrappers:
        if id(outer) in inner:
            continue
        stack = [outer]
        while isinstance(stack[-1].base_layer, ParamWrapper):
            stack.append(stack[-1].base_layer)
        experts = stack[-1].base_layer
        if not _supported(experts, stack):
            continue
        setattr(outer, ATTRIBUTE, stack)
        outer.forward = types.MethodType(_forward, outer)
        ranks.append(next(iter(outer.r.values())))
    if ranks:
        log.info("peft: LoRA on %d expert layers runs as grouped rank-%s products (no full-size weight update)",
                 len(ranks), "/".join(str(r) for r in sorted(set(ranks))))
    return len(ranks)


def _supported(experts: torch.nn.Module, stack: list) -> bool:
    names = {w.parameter_name for w in stack}
    return (
        names == set(ADAPTED)
        and all(hasattr(experts, name) and getattr(experts, name).dim() == 3 for name in ADAPTED)
        and getattr(experts, "has_gate", True) and not getattr(experts, "has_bias", False)
        and not getattr(experts, "is_transposed", False) and not getattr(experts, "has_post_expert_norm", False)
        and not getattr(experts, "_is_expert_parallel", False) and hasattr(experts, "act_fn")
        and all(w.num_experts == experts.num_experts for w in stack)
    )


def _forward(self, hidden_states, top_k_index, top_k_weights, *args, **kwargs):
    stack = getattr(self, ATTRIBUTE)
    adapters = self.active_adapters
    plain = (
        args or kwargs or len(adapters) != 1
        or any(w.disable_adapters or w.merged or adapters[0] not in w.lora_A for w in stack)
    )
    if plain:
        return type(self).forward(self, hidden_states, top_k_index, top_k_weights, *args, **kwargs)
    experts = stack[-1].base_layer
    factors = {w.parameter_name: _factors(w, adapters[0], getattr(experts, w.parameter_name).dtype) for w in stack}
    return experts_forward(experts, hidden_states, top_k_index, top_k_weights, factors)


def _factors(wrapper, adapter: str, dtype: torch.dtype):
    """peft's lora_A [E r, in] and lora_B [out, r E] as per-expert A^T [E, in, r] and s B^T [E, r, out]."""
    experts = wrapper.num_experts
    a = wrapper.lora_A[adapter].weight.to(dtype)
    b = wrapper.lora_B[adapter].weight * wrapper.scaling[adapter]
    a_t = a.reshape(experts, -1, a.shape[-1]).transpose(1, 2)
    b_t = b.reshape(b.shape[0], -1, experts).permute(2, 1, 0).to(dtype).contiguous()
    return a_t, b_t


def experts_forward(experts, hidden_states, top_k_index, top_k_weights, factors) -> torch.Tensor:
    """transformers' grouped experts forward (gate, up, down) with each projection's LoRA term added.

    Routing costs two gathers a pass and no atomics: the tokens are copied to their slots in expert order with
    `index_select`, and the slots are summed back per token through the inverse order (`Route`/`Combine`, each
    the other's backward). The router weight scales the expert's activation (width moe_intermediate_size)
    before the down projection instead of its output (width hidden_size): the same product, on a narrower
    tensor, and the combine becomes a plain sum."""
    num_top_k = top_k_index.size(-1)
    expert_ids, order = torch.sort(top_k_index.reshape(-1))
    source = order // num_top_k  # the token each sorted slot holds
    position = torch.empty_like(order)  # where each (token, k) slot went in the sorted order
    position[order] = torch.arange(order.numel(), device=order.device)
    # histc, not bincount: its output shape does not depend on the data (CUDA graphs, torch.compile)
    ids = expert_ids.int() if expert_ids.is_cuda else expert_ids.float()
    counts = torch.histc(ids, bins=experts.num_experts, min=0, max=experts.num_experts - 1)
    offsets = torch.cumsum(counts, dim=0, dtype=torch.int32)

    def project(x, name):
        a_t, b_t = factors[name]
        out = grouped_mm(x, getattr(experts, name).transpose(1, 2), offsets)
        return out + grouped_mm(grouped_mm(x, a_t, offsets), b_t, offsets)

    tokens = Route.apply(hidden_states, source, position, num_top_k)
    gate, up = project(tokens, "gate_up_proj").chunk(2, dim=-1)
    weights = top_k_weights.reshape(-1)[order].unsqueeze(-1)
    activation = (experts.act_fn(gate) * up * weights).to(tokens.dtype)
    return Combine.apply(project(activation, "down_proj"), source, position, num_top_k)


def _gather_sum(slots: torch.Tensor, position: torch.Tensor, num_top_k: int) -> torch.Tensor:
    """Per token, the sum of its num_top_k slots (rows of `slots` in sorted order), in the slots' dtype (CUDA
    autocast would return the sum in float32, and every later layer's experts would get float32 tokens)."""
    with torch.autocast(slots.device.type, enabled=False):
        return slots.index_select(0, position).view(-1, num_top_k, slots.shape[-1]).sum(dim=1)


class Route(torch.autograd.Function):
    """Each token's row copied to its num_top_k slots in expert order; the gradient sums them back."""

    @staticmethod
    def forward(ctx, hidden_states, source, position, num_top_k):
        ctx.save_for_backward(position)
        ctx.num_top_k = num_top_k
        return hidden_states.index_select(0, source)

    @staticmethod
    def backward(ctx, grad):
        (position,) = ctx.saved_tensors
        return _gather_sum(grad, position, ctx.num_top_k), None, None, None


class Combine(torch.autograd.Function):
    """Per token, the sum of its slots' outputs; the gradient is the token's gradient copied to each slot."""

    @staticmethod
    def forward(ctx, slots, source, position, num_top_k):
        ctx.save_for_backward(source)
        return _gather_sum(slots, position, num_top_k)

    @staticmethod
    def backward(ctx, grad):
        (source,) = ctx.saved_tensors
        return grad.index_select(0, source), None, None, None


def grouped_mm(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Row block g of x (rows offsets[g-1]:offsets[g]) times weight[g]: torch's grouped GEMM on a GPU, a loop
    elsewhere (torch's CPU grouped_mm has no float32 backward). On a GPU x takes the weights' dtype, as in
    transformers, rather than the per-expert loop (128 experts: ten times slower)."""
    if x.is_cuda and weight.dtype == torch.bfloat16 and hasattr(torch.nn.functional, "grouped_mm"):
        return torch.nn.functional.grouped_mm(x.to(weight.dtype), weight, offs=offsets)
    bounds = [0, *offsets.tolist()]
    blocks = [x[start:end] @ weight[g] for g, (start, end) in enumerate(zip(bounds, bounds[1:])) if end > start]
    return torch.cat(blocks) if blocks else x.new_zeros(0, weight.shape[-1])
