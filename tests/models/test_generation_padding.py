"""src/posttrain/models/generation_padding.py: generate sees prompts left-padded to a multiple of the padding,
and its caller gets back exactly what an unpadded caller of a generate on those padded prompts would: the same
new tokens after the caller's own prompt columns."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from posttrain.models.generation_padding import pad_prompts_for_generate

PAD = 0


def tiny_model():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=PAD))
    return model.eval()


def left_padded(prompts: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    return ids, (ids != PAD).long()


PROMPTS = [[5, 6, 7, 8, 9], [11, 12, 13]]


def greedy(model, ids, mask, **kwargs):
    return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=PAD,
                          **kwargs)


def test_generate_sees_padded_prompts_and_returns_the_callers_columns():
    model = tiny_model()
    ids, mask = left_padded(PROMPTS, 5)
    padded_ids, padded_mask = left_padded(PROMPTS, 8)
    expected = greedy(model, padded_ids, padded_mask)  # what TRL's pad_to_multiple_of=8 would generate
    widths = []
    model.register_forward_pre_hook(lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                    with_kwargs=True)
    pad_prompts_for_generate(model, 8)

    out = greedy(model, ids, mask)
    assert widths[0] == 8  # the prefill ran on the padded prompt
    assert out.shape == (2, 5 + 6)
    assert torch.equal(out[:, :5], ids)  # the caller's prompt columns, so out[:, 5:] are the completions
    assert torch.equal(out[:, 5:], expected[:, 8:])

    dict_out = greedy(model, ids, mask, return_dict_in_generate=True)
    assert torch.equal(dict_out.sequences, out)


def test_a_prompt_already_at_a_multiple_is_passed_on_as_it_is():
    model = tiny_model()
    ids, mask = left_padded(PROMPTS, 8)
    expected = greedy(model, ids, mask)
    pad_prompts_for_generate(model, 8)
    assert torch.equal(greedy(model, ids, mask), expected)
