"""Every guide preset at its real model size fits one H200 by the plan (meta device, no weights), so a preset
edit that would no longer fit one GPU fails here, on a CPU, before anyone rents the GPU (issue 14).
benchmarks/guides_full_size.py measures the same presets on the GPU."""

from __future__ import annotations

import pytest

import posttrain.plan as plan_module
from posttrain.compose import command_overrides, configs_to_run
from posttrain.plan import GIB, check_fits, make_plan

H200 = ("NVIDIA H200", 139 * GIB, 989e12)

GUIDE_PRESETS = {
    "DPO guide, qwen3-4b": ["experiment=diversity_dpo", "model=qwen3-4b"],
    "DPO guide, qwen3-8b": ["experiment=diversity_dpo", "model=qwen3-8b"],
    "DPO guide, qwen3-30b-a3b": ["experiment=diversity_dpo", "model=qwen3-30b-a3b"],
    "NLI guide, mistral-7b qlora": ["experiment=nli_qlora"],
    "SmolLM3 guide, sft": ["method=sft", "model=smollm3-3b"],
    "SmolLM3 guide, dpo": ["method=dpo", "model=smollm3-3b"],
    "MiniMind plan, its stages": ["experiment=minimind_posttrain"],
    "tic-tac-toe guide, sft dpo grpo at 0.5b": ["experiment=tictactoe", "model=qwen2.5-0.5b"],
}


@pytest.mark.parametrize("preset", sorted(GUIDE_PRESETS))
def test_the_guide_preset_fits_one_h200_at_full_size(preset, monkeypatch):
    monkeypatch.setattr(plan_module, "_gpu", lambda: H200)
    # the published architecture and vocabulary (the hub model is not here; its conf/model/ architecture is)
    overrides = command_overrides([*GUIDE_PRESETS[preset], "hardware=gpu"])
    _, configs = configs_to_run(overrides, "train")
    for label, cfg in configs:
        plan, _ = make_plan(cfg, with_data=False)
        check_fits(plan)  # one row at a time fits, else the one-line error names the fixes
        assert plan.memory.total <= H200[1], (
            f"{preset} ({label}): {plan.memory.total / GIB:.0f} GiB planned for micro-batches of {plan.micro_batch} "
            f"rows of {cfg.model.max_length} tokens, over the H200's 139 GiB")
