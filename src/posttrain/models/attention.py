"""hardware.attention=varlen: PyTorch's own FlashAttention-2 variable-length kernel for padding-free rows.

Packed (padding-free) batches are one row of many examples whose position_ids restart at each example; the
attention must stay inside each example. flash-attn's varlen kernel does that from the examples' cumulative
lengths (cu_seq_lens), but flash-attn is a separate build that is often missing; flex attention (the
fallback) builds a block mask and runs a generic Triton kernel, measured at a fifth of the GPU's attention
speed on the 0.5B benchmark. torch >= 2.10 ships the same FlashAttention-2 varlen kernel as
`torch.nn.attention.varlen.varlen_attn`; this module registers it with transformers' attention interface
under the name `varlen`.

The cumulative lengths come from TRL's padding-free collator (cu_seq_lens_q/k, max_length_q/k, computed on
the CPU) or from posttrain's padding-free DPO forward; without them (a padded batch, generation with a
cache) the layer runs transformers' SDPA with an explicit mask, so a model set to `varlen` still evaluates
and samples correctly. On a CPU (tests) the packed path runs SDPA one example at a time: the same result
the kernel computes on a GPU.
"""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F

NAME = "varlen"


def kernel_available() -> bool:
    """torch ships the varlen kernel and a CUDA GPU of compute capability 8 or more (FlashAttention-2) is here."""
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def register() -> None:
    """Make `varlen` a valid attn_implementation (idempotent). Its mask function is flash attention's: no mask
    for a batch without padding, else the 2-D padding mask, which varlen_attention_forward turns into SDPA's."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

    AttentionInterface.register(NAME, varlen_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, flash_attention_mask)


def varlen_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, sliding_window: int | None = None,
                             softcap: float | None = None, is_causal: bool | None = None, **kwargs):
    """transformers' attention signature: query (batch, heads, length, dim), key/value (batch, kv_heads,
    kv_length, dim); returns (batch, length, heads, dim) and no attention weights."""
    causal = module.is_causal if is_causal is None else is_causal
    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    max_q, max_k = kwargs.get("max_length_q"), kwargs.get("max_length_k")
    one_row = query.shape[0] == 1 and attention_mask is None and query.shape[2] == key.shape[2]
    if cu_q is None and one_row and kwargs.get("position_ids") is not None:
        cu_q, max_q = _bounds_from_positions(kwargs["position_ids"])  # a packed row given by position_ids alone
        cu_k, max_k = cu_q, max_q
    packed = cu_q is not None and cu_k is not None and one_row and not dropout and not softcap and sliding_window is None
    if not packed:
        return _masked_sdpa(module, query, key, value, attention_mask, dropout, scaling, causal, softcap, kwargs)
    q, k, v = (t.transpose(1, 2)[0] for t in (query, key, value))  # (tokens, heads, dim)
    same = cu_k is cu_q
    cu_q = cu_q.to(device=q.device, dtype=torch.int32)
    cu_k = cu_q if same else cu_k.to(device=q.device, dtype=torch.int32)
    if q.is_cuda:
        out = _varlen_kernel(q, k, v, cu_q, cu_k, int(max_q), int(max_k), scaling, causal)
    else:
        out = _per_example(q, k, v, cu_q, scaling, causal)
    return out.unsqueeze(0), None


def _bounds_from_positions(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cumulative lengths and the longest example of a row whose position_ids restart at 0 at each example
    (two device-to-host reads a layer: the collator's cu_seq_lens avoid them)."""
    positions = position_ids.reshape(-1)
    starts = torch.nonzero(positions == 0).flatten()
    if starts.numel() == 0 or int(starts[0]) != 0:  # a continuation, not starting at 0: one example
        starts = torch.zeros(1, dtype=starts.dtype, device=starts.device)
    cu = torch.cat([starts, starts.new_tensor([positions.numel()])]).to(torch.int32)
    return cu, int(cu.diff().max())


def _varlen_kernel(q, k, v, cu_q, cu_k, max_q: int, max_k: int, scale: float | None, causal: bool):
    """torch's varlen_attn, across its signatures (2.10-2.11: is_causal=; later: window_size=(-1, 0))."""
    from torch.nn.attention.varlen import varlen_attn

    params = _parameters(varlen_attn)
    options = {}
    if scale is not None and scale != q.shape[-1] ** -0.5:
        if "scale" not in params:
            raise ValueError("this torch's varlen_attn has no scale argument; set hardware.attention=flex_attention")
        options["scale"] = scale
    if "is_causal" in params:
        options["is_causal"] = causal
    elif causal:
        options["window_size"] = (-1, 0)
    if k.shape[1] != q.shape[1]:  # grouped-query attention
        if "enable_gqa" in params:
            options["enable_gqa"] = True
        else:
            k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
    return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **options)


@functools.cache
def _parameters(function) -> frozenset[str]:
    return frozenset(inspect.signature(function).parameters)


def _per_example(q, k, v, cu_seq_lens, scale: float | None, causal: bool):
    """The packed row's attention one example at a time with SDPA: (tokens, heads, dim) in and out."""
    bounds = cu_seq_lens.tolist()
    outs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end > start:
            qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # (heads, length, dim)
            outs.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal, scale=scale,
                                                       enable_gqa=ks.shape[0] != qs.shape[0]).transpose(0, 1))
    return torch.cat(outs, dim=0)


def _masked_sdpa(module, query, key, value, attention_mask, dropout, scaling, causal, softcap, kwargs):
    """A padded batch or a cached decode step: SDPA with a boolean mask built from flash attention's 2-D
    padding mask (causal, aligned to the last token seen as a cache requires; a static cache's empty slots
    masked)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if softcap:
        raise ValueError("attention softcapping is not supported by hardware.attention=varlen; set hardware.attention=eager")
    q_len, kv_len = query.shape[2], key.shape[2]
    mask = attention_mask
    if mask is not None and mask.dim() == 2:
        seen = min(mask.shape[1], kv_len)  # a static cache holds kv_len slots, the first `seen` of them filled
        mask = mask[:, None, None, -seen:].bool()
        if causal and q_len > 1:
            mask = mask & _bottom_right_causal(q_len, seen, query.device)
        if seen < kv_len:
            mask = torch.cat([mask, mask.new_zeros(*mask.shape[:3], kv_len - seen)], dim=-1)
    elif mask is None and causal and q_len != kv_len and kwargs.get("position_ids") is not None:
        # no padding, so a token's position is its cache slot; a static cache's slots past it are empty
        slots = torch.arange(kv_len, device=query.device)
        mask = slots <= kwargs["position_ids"].reshape(-1, 1, q_len, 1).to(query.device)
    elif mask is None and causal and 1 < q_len != kv_len:
        mask = _bottom_right_causal(q_len, kv_len, query.device)[None, None].expand(query.shape[0], 1, q_len, kv_len)
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith(("cu_seq_lens", "max_length"))}
    return sdpa_attention_forward(module, query, key, value, mask, dropout=dropout, scaling=scaling,
                                  is_causal=causal and mask is None, **kwargs)


def _bottom_right_causal(q_len: int, kv_len: int, device) -> torch.Tensor:
    """(q_len, kv_len) True where query i (the last q_len positions of kv_len) may see key j."""
    rows = torch.arange(kv_len - q_len, kv_len, device=device)[:, None]
    return torch.arange(kv_len, device=device)[None, :] <= rows
