"""Side-by-side training throughput on one GPU: plain TRL against posttrain `hardware=gpu`, same data.

    python benchmarks/gpu_throughput.py --out benchmarks/results/gpu_throughput.md [--steps 30]
    python benchmarks/gpu_throughput.py --smoke --out /tmp/smoke.md      # CPU, tiny sizes: checks the plumbing

Model: the Qwen2.5-0.5B architecture with random weights (conf/model/qwen2.5-0.5b.yaml, bf16) and a
word-level tokenizer of 151,936 entries built here, offline. SFT rows: a 32-token prompt and a completion of
32-992 tokens (uniform); DPO rows: the same prompt with two such completions. Every case runs in its own
process (Liger patches model classes globally; peak memory is per process) for --steps optimizer steps:

  SFT  trl_defaults   plain TRL SFTTrainer, its defaults (batch 8, activation checkpointing)
       trl_tuned      plain TRL, best hand-tuned: Liger, packing (bfd, padding-free) 16 x 2048, flex attention,
                      no activation checkpointing, fused AdamW
       posttrain      python -m posttrain method=sft hardware=gpu (its defaults: batch_size 32)
  DPO  trl_dpo        plain TRL DPOTrainer, reference log-probs precomputed, its defaults otherwise
       posttrain_dpo  python -m posttrain method=dpo hardware=gpu
  KTO, CPO, ORPO      trl_kto / trl_cpo / trl_orpo: plain TRL's trainer, its defaults (KTO's reference
                      precomputed; CPO and ORPO from trl.experimental), and posttrain_kto / _cpo / _orpo:
                      python -m posttrain method=<it> hardware=gpu; KTO's rows are the DPO pairs unpaired
  GRPO trl_grpo       plain TRL GRPOTrainer, its defaults (8 completions of --completion tokens per step)
       posttrain_grpo python -m posttrain method=grpo hardware=gpu batch_size=8, the same completions
       (posttrain_grpo_variant adds --grpo-variant)

GRPO's figure is completions sampled and trained on per second (the steps after --grpo-warmup, each step
batch x accumulation completions); the rows' prompts are the SFT prompts and the reward the share of a
completion's words that are the prompt's words, so a random model's rewards differ within each group.

Figures: real (non-pad) tokens per second over the steps after --warmup (the trainer's non-padding token
count, chosen and rejected together for DPO), the same end to end (trainer construction, i.e. tokenization
and the DPO reference pass, warm-up and compilation included), MFU = 6 N tokens/s / 989e12 (N parameters,
H200 dense bf16 peak; the reference pass is not counted) and the process's peak allocated GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VOCAB = 151_936
PEAK_FLOPS = 989e12  # H200 (SXM) dense bf16
SFT_CASES = ("trl_defaults", "trl_tuned", "posttrain", "posttrain_variant")
DPO_CASES = ("trl_dpo", "posttrain_dpo")
PREFERENCE_METHODS = ("dpo", "kto", "cpo", "orpo")
GRPO_CASES = ("trl_grpo", "posttrain_grpo", "posttrain_grpo_variant")
LABELS = {
    "trl_defaults": "plain TRL SFTTrainer, its defaults",
    "trl_tuned": "plain TRL, Liger, packing 16x2048, flex attention, no checkpointing (best hand-tuned)",
    "posttrain": "posttrain `method=sft hardware=gpu`",
    "posttrain_variant": "posttrain `method=sft hardware=gpu` + --variant overrides",
    "trl_dpo": "plain TRL DPOTrainer, reference log-probs precomputed",
    "posttrain_dpo": "posttrain `method=dpo hardware=gpu`",
    "trl_kto": "plain TRL KTOTrainer, reference log-probs precomputed",
    "posttrain_kto": "posttrain `method=kto hardware=gpu`",
    "trl_cpo": "plain TRL CPOTrainer (trl.experimental), its defaults",
    "posttrain_cpo": "posttrain `method=cpo hardware=gpu`",
    "trl_orpo": "plain TRL ORPOTrainer (trl.experimental), its defaults",
    "posttrain_orpo": "posttrain `method=orpo hardware=gpu`",
    "trl_grpo": "plain TRL GRPOTrainer, its defaults",
    "posttrain_grpo": "posttrain `method=grpo hardware=gpu batch_size=8`",
    "posttrain_grpo_variant": "posttrain `method=grpo hardware=gpu batch_size=8` + --grpo-variant overrides",
}


# ---------------------------------------------------------------------------------------------- data
def build_tokenizer(folder: Path, vocab: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<unk>"]
    words = {w: i for i, w in enumerate(specials + [f"w{i}" for i in range(vocab - len(specials))])}
    core = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    fast.save_pretrained(folder)


def words(rng: random.Random, n: int, vocab: int) -> str:
    return " ".join(f"w{rng.randrange(vocab - 3)}" for _ in range(n))


def build_data(work: Path, rows: int, dpo_rows: int, vocab: int, prompt_len: int, min_len: int, max_len: int) -> None:
    rng = random.Random(0)
    with open(work / "sft.jsonl", "w") as sft, open(work / "dpo.jsonl", "w") as dpo, \
            open(work / "grpo.jsonl", "w") as grpo, open(work / "kto.jsonl", "w") as kto:
        for row in range(rows):
            prompt = words(rng, prompt_len, vocab)
            grpo.write(json.dumps({"prompt": prompt}) + "\n")
            one, two = (" " + words(rng, rng.randint(min_len, max_len), vocab) for _ in range(2))
            sft.write(json.dumps({"prompt": prompt, "completion": one}) + "\n")
            if row < dpo_rows:  # DPO scores its reference over every row first: only what the steps need
                dpo.write(json.dumps({"prompt": prompt, "chosen": one, "rejected": two}) + "\n")
                kto.write(json.dumps({"prompt": prompt, "completion": one, "label": True}) + "\n")
                kto.write(json.dumps({"prompt": prompt, "completion": two, "label": False}) + "\n")


# ---------------------------------------------------------------------------------------------- timing
def timer_callback(warmup: int, started: float, record: dict, profile: int = 0, profile_to: Path | None = None):
    """Times the steps after `warmup`; with `profile` > 0, torch's profiler records that many steps just
    before step `warmup` (outside the timed steps) and writes its kernel table and the GPU's busy share to
    `profile_to`."""
    import torch
    from transformers import TrainerCallback

    profiler = None

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                sync()
                record["t0"], record["tokens0"] = time.perf_counter(), state.num_input_tokens_seen
                record["samples_per_step"] = args.per_device_train_batch_size * args.gradient_accumulation_steps
            if profile and state.global_step == max(0, warmup - profile):
                nonlocal profiler
                sync()
                profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]
                                                  + ([torch.profiler.ProfilerActivity.CUDA] if torch.cuda.is_available() else []),
                                                  with_stack=True)
                profiler.__enter__()
                record["profile_t0"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            nonlocal profiler
            # host time at each step's end (no sync added): where a run's time goes between the steps
            record.setdefault("step_ends", []).append(round(time.perf_counter() - started, 4))
            if profiler is not None and state.global_step == max(0, warmup - profile) + profile:
                sync()
                wall = time.perf_counter() - record.pop("profile_t0")
                profiler.__exit__(None, None, None)
                write_profile(profiler, wall, profile, profile_to)
                profiler = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                record.setdefault("losses", []).append(round(float(logs["loss"]), 4))
                record["learning_rate"] = args.learning_rate

        def on_train_end(self, args, state, control, **kwargs):
            sync()
            now = time.perf_counter()
            record.update(steps=state.global_step, tokens=state.num_input_tokens_seen,
                          seconds=now - record.get("t0", now), end_to_end_seconds=now - started)
            record["steady_tokens"] = state.num_input_tokens_seen - record.get("tokens0", 0)
            record["steady_samples"] = (state.global_step - warmup) * record.get("samples_per_step", 0)
            if torch.cuda.is_available():
                record["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30

    return Timer()


def write_profile(profiler, wall: float, steps: int, path: Path) -> None:
    """The profiled steps' kernel table (by GPU time) and the share of the wall time the GPU was busy."""
    from torch.autograd import DeviceType

    events = profiler.key_averages()
    # the kernels themselves (one stream: they do not overlap), not the operators that launched them
    device_us = sum(e.time_range.elapsed_us() for e in profiler.events() if e.device_type == DeviceType.CUDA)
    lines = [f"{steps} steps, {wall:.3f} s wall ({wall / steps * 1000:.1f} ms a step), GPU kernels "
             f"{device_us / 1e6:.3f} s ({100 * device_us / 1e6 / wall:.1f}% busy)", ""]
    lines.append(events.table(sort_by="self_device_time_total" if device_us else "self_cpu_time_total", row_limit=45,
                              max_name_column_width=90))
    lines.append(events.table(sort_by="cpu_time_total", row_limit=25, max_name_column_width=90))
    path.write_text("\n".join(lines))
    if device_us:  # where the GPU waited on the host: benchmarks/trace_gaps.py over the chrome trace
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from trace_gaps import analyse

        trace = path.with_suffix(".trace.json")
        profiler.export_chrome_trace(str(trace))
        path.with_suffix(".gaps.txt").write_text("\n".join(analyse(json.loads(trace.read_text()), steps)) + "\n")
        trace.unlink()


def count_pair_tokens(trainer) -> None:
    """CPO's and ORPO's batches hold chosen_/rejected_input_ids and no input_ids, so the Trainer's
    num_input_tokens_seen stays 0: count their real tokens (prompt and completion, chosen and rejected) as
    each batch is collated, before its step."""
    collate = trainer.data_collator

    def counted(features):
        batch = collate(features)
        masks = [value for key, value in batch.items() if key in ("chosen_attention_mask", "rejected_attention_mask")]
        trainer.state.num_input_tokens_seen += int(sum(int(mask.sum()) for mask in masks))
        return batch

    trainer.data_collator = counted


# ---------------------------------------------------------------------------------------------- cases
def model_architecture(smoke: bool) -> dict:
    from omegaconf import OmegaConf

    arch = OmegaConf.to_container(OmegaConf.load(REPO / "conf/model/qwen2.5-0.5b.yaml").architecture)
    if smoke:
        arch.update(SMOKE_ARCH)
    return arch


SMOKE_ARCH = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 16}


def plain_trl(case: str, a, work: Path, record: dict) -> None:
    import torch
    from datasets import load_dataset
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gpu = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(work / "tokenizer")
    arch = model_architecture(a.smoke)
    config = AutoConfig.for_model(arch.pop("model_type"), **arch, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if gpu else torch.float32)
    common = dict(output_dir=str(work / f"out_{case}"), max_steps=a.steps, report_to=[], save_strategy="no",
                  logging_steps=5, include_num_input_tokens_seen="non_padding", disable_tqdm=True,
                  use_cpu=not gpu, bf16=gpu)
    started = time.perf_counter()
    if case == "trl_grpo":
        from trl import GRPOConfig, GRPOTrainer

        data = load_dataset("json", data_files=str(work / "grpo.jsonl"), split="train")
        args = GRPOConfig(**common, max_completion_length=a.completion, learning_rate=1e-6)
        trainer = GRPOTrainer(model=model, reward_funcs=overlap_reward, args=args, train_dataset=data,
                              processing_class=tokenizer)
    elif case == "trl_dpo":
        from trl import DPOConfig, DPOTrainer

        data = load_dataset("json", data_files=str(work / "dpo.jsonl"), split="train")
        args = DPOConfig(**common, precompute_ref_log_probs=True, learning_rate=1e-6)
        trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    elif case == "trl_kto":
        from trl import KTOConfig, KTOTrainer

        data = load_dataset("json", data_files=str(work / "kto.jsonl"), split="train")
        args = KTOConfig(**common, precompute_ref_log_probs=True, learning_rate=1e-6)
        trainer = KTOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    elif case in ("trl_cpo", "trl_orpo"):
        if case == "trl_cpo":
            from trl.experimental.cpo import CPOConfig as Config, CPOTrainer as Trainer
        else:
            from trl.experimental.orpo import ORPOConfig as Config, ORPOTrainer as Trainer

        data = load_dataset("json", data_files=str(work / "dpo.jsonl"), split="train")
        args = Config(**common, learning_rate=1e-6, remove_unused_columns=False)
        trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        count_pair_tokens(trainer)
    else:
        from trl import SFTConfig, SFTTrainer

        data = load_dataset("json", data_files=str(work / "sft.jsonl"), split="train")
        tuned = {}
        if case == "trl_tuned":
            tuned = dict(per_device_train_batch_size=16, max_length=2048, packing=True, packing_strategy="bfd",
                         gradient_checkpointing=False, optim="adamw_torch_fused" if gpu else "adamw_torch")
            if gpu:
                tuned["use_liger_kernel"] = True
                model.set_attn_implementation("flex_attention")
            if a.smoke:
                tuned.update(per_device_train_batch_size=2, max_length=256)
        args = SFTConfig(**common, **tuned)
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    record["parameters"] = model.num_parameters()
    record["settings"] = (f"batch {args.per_device_train_batch_size}x{args.gradient_accumulation_steps}, "
                          f"checkpointing {args.gradient_checkpointing}, "
                          f"attention {model.config._attn_implementation}, liger {args.use_liger_kernel}, "
                          f"packing {getattr(args, 'packing', False)}, optim {getattr(args.optim, 'value', args.optim)}")
    trainer.add_callback(timer_callback(a.warmup, started, record, a.profile, work / f"{case}.profile.txt"))
    trainer.train()


def overlap_reward(prompts, completions, **kwargs) -> list[float]:
    """The share of a completion's words that are its prompt's words (posttrain.rewards has no such reward;
    both GRPO cases use this one, the posttrain case through a format reward of the same cost)."""
    return [len(set(c.split()) & set(p.split())) / max(1, len(c.split())) for p, c in zip(prompts, completions)]


def posttrain_case(case: str, a, work: Path, record: dict) -> None:
    """The real command line (posttrain.cli.main, as `python -m posttrain`), with a timing callback added
    to the trainer the registry builds."""
    import torch

    from posttrain import cli, registry

    preference = case.removeprefix("posttrain_") in PREFERENCE_METHODS
    grpo = case.startswith("posttrain_grpo")
    method = case.removeprefix("posttrain_") if preference else "grpo" if grpo else "sft"
    data = "kto" if method == "kto" else "dpo" if preference else method
    gpu = torch.cuda.is_available()
    overrides = [
        "model=qwen2.5-0.5b", "model.init=random", f"model.tokenizer={work / 'tokenizer'}",
        f"method={method}", "dataset=local", f"dataset.path={work / (data + '.jsonl')}",
        "dataset.eval_fraction=0", "eval=none", f"max_steps={a.steps}", "logger=none",
        "training.save_steps=0", "training.eval_steps=0", "training.logging_steps=5", f"run_name={case}",
        "hardware=gpu" if gpu else "hardware=auto",
    ]
    if case == "posttrain_variant":
        overrides += a.variant.split()
    if grpo:  # TRL's defaults: 8 completions a step (one group), learning rate as the plain case
        overrides += ["batch_size=8", f"method.args.max_completion_length={a.completion}",
                      "method.rewards=[{name: format, pattern: 'w1'}]"]
    if case == "posttrain_grpo_variant":
        overrides += a.grpo_variant.split()
    # DPO and GRPO keep posttrain's learning-rate table (1e-6 for full fine-tuning at 0.5B, the plain cases'
    # rate): the logged losses show the default trains without diverging
    if a.smoke:  # CPU: the GPU's choices forced where they run on a CPU, tiny sizes
        overrides += ["hardware.packing=true", "hardware.attention=sdpa"]
        overrides += [] if grpo else ["hardware.micro_batch=4", "batch_size=8"]
        overrides += [f"model.architecture.{k}={v}" for k, v in SMOKE_ARCH.items()]
    started = time.perf_counter()
    original_build = registry.Method.build

    def build(method, inputs):
        trainer = original_build(method, inputs)
        if method.name in ("cpo", "orpo"):
            count_pair_tokens(trainer)
        trainer.add_callback(timer_callback(a.warmup, started, record, a.profile, work / f"{case}.profile.txt"))
        record["parameters"] = inputs.model.num_parameters()
        args = trainer.args
        record["settings"] = ((f"{a.variant}: " if case == "posttrain_variant" else "")
                              + f"batch {args.per_device_train_batch_size}x{args.gradient_accumulation_steps}, "
                              f"checkpointing {args.gradient_checkpointing}, "
                              f"attention {inputs.model.config._attn_implementation}, liger {args.use_liger_kernel}, "
                              f"packing {inputs.hardware.packing}, optim {getattr(args.optim, 'value', args.optim)}")
        return trainer

    registry.Method.build = build
    sys.argv = ["posttrain", *overrides]
    try:
        cli.main()
    except SystemExit as stop:
        if stop.code:
            raise


def run_case(a) -> None:
    work = Path(a.work)
    if "grpo" in a.case:
        a.steps, a.warmup = a.grpo_steps, a.grpo_warmup
    os.chdir(work)
    record: dict = {"case": a.case}
    if a.case.startswith("posttrain"):
        posttrain_case(a.case, a, work, record)
    else:
        plain_trl(a.case, a, work, record)
    (work / f"{a.case}.json").write_text(json.dumps(record, indent=2))


# ---------------------------------------------------------------------------------------------- table
def figures(r: dict) -> dict:
    steady = r["steady_tokens"] / r["seconds"] if r.get("seconds") else None
    return {
        "tokens_per_s": steady,
        "end_to_end": r["tokens"] / r["end_to_end_seconds"],
        "mfu": 6 * r["parameters"] * steady / PEAK_FLOPS if steady else None,
        "peak_gib": r.get("peak_gib"),
        "samples_per_s": r.get("steady_samples", 0) / r["seconds"] if r.get("seconds") else None,
    }


# the columns of a table: (header, figure -> cell); a figure that is None shows "-"
TOKEN_COLUMNS = (("tokens/s", lambda f: f"{f['tokens_per_s']:,.0f}"), ("end to end tokens/s", lambda f: f"{f['end_to_end']:,.0f}"),
                 ("MFU (6N)", lambda f: f"{100 * f['mfu']:.1f}%"), ("peak GiB", lambda f: f"{f['peak_gib']:.1f}"))
SAMPLE_COLUMNS = (("samples/s", lambda f: f"{f['samples_per_s']:.2f}"), ("tokens/s", lambda f: f"{f['tokens_per_s']:,.0f}"),
                  ("peak GiB", lambda f: f"{f['peak_gib']:.1f}"))


def table(results: dict, cases: tuple[str, ...], base: str, tuned: str | None, base_name: str,
          columns=TOKEN_COLUMNS, rate: str = "tokens_per_s") -> list[str]:
    """One row per case that ran: its figures, and its `rate` against the base case (and the tuned one)."""
    lines = ["| what | " + " | ".join(name for name, _ in columns) + " | vs TRL | settings |",
             "|---" * (len(columns) + 3) + "|"]
    for case in cases:
        r = results.get(case)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {LABELS[case]} | failed: {r['error']} |" + " |" * (len(columns) + 1))
            continue
        f = figures(r)
        cells = []
        for _, cell in columns:
            try:
                cells.append(cell(f))
            except TypeError:  # a figure the case did not record
                cells.append("-")
        vs = [f"{f[rate] / figures(results[other])[rate]:.2f}x {name}"
              for other, name in ((base, base_name), (tuned, "tuned")) if other and other != case
              and other in results and "error" not in results[other] and f[rate] and figures(results[other])[rate]]
        lines.append(f"| {LABELS[case]} | " + " | ".join(cells) + f" | {', '.join(vs) or '-'} | {r['settings']} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="file the markdown table is written to")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per case")
    p.add_argument("--warmup", type=int, default=8, help="steps left out of the steady tokens/s")
    p.add_argument("--rows", type=int, default=3000, help="synthetic SFT rows")
    p.add_argument("--dpo-rows", type=int, default=1200, help="synthetic DPO rows (the first SFT rows' prompts)")
    p.add_argument("--case-timeout", type=int, default=600, help="seconds one case may take")
    p.add_argument("--cases", default="trl_defaults,trl_tuned,posttrain,trl_dpo,posttrain_dpo",
                   help="comma-separated cases to run (also: posttrain_variant)")
    p.add_argument("--smoke", action="store_true", help="CPU plumbing check: tiny model, vocabulary and rows")
    p.add_argument("--work", help="working folder (default: a new temporary one)")
    p.add_argument("--src", default=str(REPO / "src"),
                   help="posttrain source folder to import (e.g. a `git archive` of one commit's src/ and conf/)")
    p.add_argument("--label", default="", help="text added to the table's header (e.g. the posttrain commit)")
    p.add_argument("--variant", default="hardware.compile=true",
                   help="overrides of the posttrain_variant case (not run unless named in --cases)")
    p.add_argument("--grpo-steps", type=int, default=12, help="optimizer steps per GRPO case")
    p.add_argument("--grpo-warmup", type=int, default=3, help="GRPO steps left out of the steady samples/s")
    p.add_argument("--completion", type=int, default=256, help="GRPO completion length in tokens")
    p.add_argument("--grpo-variant", default="+method.args.use_transformers_paged=true",
                   help="overrides of the posttrain_grpo_variant case (not run unless named in --cases)")
    p.add_argument("--profile", type=int, default=0,
                   help="profile this many steps after --warmup in each case: <work>/<case>.profile.txt")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    a = p.parse_args()
    if a.case:
        return run_case(a)

    import tempfile

    import torch
    import transformers
    import trl

    work = Path(a.work or tempfile.mkdtemp(prefix="gpu_throughput-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    vocab = 1000 if a.smoke else VOCAB
    if a.smoke:
        a.steps, a.warmup, a.rows, a.dpo_rows = min(a.steps, 4), 1, 64, 64
        a.grpo_steps, a.grpo_warmup, a.completion = 3, 1, 16
    build_tokenizer(work / "tokenizer", vocab)
    build_data(work, a.rows, a.dpo_rows, vocab, 32, 32 if not a.smoke else 8, 992 if not a.smoke else 100)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    try:
        import liger_kernel
        liger = getattr(liger_kernel, "__version__", None) or __import__("importlib.metadata").metadata.version("liger-kernel")
    except ImportError:
        liger = "not installed"
    header = (f"GPU: {gpu}; torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
              f"liger-kernel {liger}; {a.steps} steps per case, steady tokens/s after step {a.warmup}"
              + (f"; posttrain {a.label}" if a.label else ""))
    print(header, flush=True)
    results, logs = {}, []
    for case in a.cases.split(","):
        started = time.perf_counter()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--case", case, "--work", str(work),
               "--steps", str(a.steps), "--warmup", str(a.warmup), "--variant", a.variant,
               "--grpo-steps", str(a.grpo_steps), "--grpo-warmup", str(a.grpo_warmup), "--completion", str(a.completion),
               "--grpo-variant", a.grpo_variant, "--profile", str(a.profile)] + (["--smoke"] if a.smoke else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(a.src).resolve()), os.environ.get("PYTHONPATH", "")]),
               "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=a.case_timeout)
        except subprocess.TimeoutExpired as late:
            text = [t.decode(errors="replace") if isinstance(t, bytes) else (t or "") for t in (late.stdout, late.stderr)]
            done = subprocess.CompletedProcess(cmd, 124, text[0], text[1] + f"\ntimed out after {a.case_timeout} s")
        out = work / f"{case}.json"
        if done.returncode == 0 and out.exists():
            results[case] = json.loads(out.read_text())
            f = figures(results[case])
            print(f"{case}: {f['tokens_per_s'] or 0:,.0f} tokens/s, {f['samples_per_s'] or 0:.2f} samples/s, peak {f['peak_gib'] or 0:.1f} GiB, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        else:
            last = (done.stderr or done.stdout).strip().splitlines()
            results[case] = {"error": (last[-1] if last else f"exit {done.returncode}")[:200]}
            print(f"{case}: FAILED {results[case]['error']}", flush=True)
        logs.append(f"===== {case} (exit {done.returncode})\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
        text = report(a, header, results)
        if a.out:  # after every case, so a run cut short still leaves its figures
            Path(a.out).write_text(text)
            Path(a.out).with_suffix(".log").write_text("\n".join(logs))
            Path(a.out).with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(text)


def report(a, header: str, results: dict) -> str:
    lines = [header, "", "SFT (Qwen2.5-0.5B architecture, 32-token prompt + 32-992-token completion)", ""]
    lines += table(results, SFT_CASES, "trl_defaults", "trl_tuned", "defaults")
    lines += ["", "DPO (same prompts, two completions each)", ""]
    lines += table(results, DPO_CASES, "trl_dpo", None, "TRL precomputed")
    for method in PREFERENCE_METHODS[1:]:
        cases = (f"trl_{method}", f"posttrain_{method}")
        if any(case in results for case in cases):
            lines += ["", f"{method.upper()} (the DPO rows{', unpaired' if method == 'kto' else ''})", ""]
            lines += table(results, cases, f"trl_{method}", None, "TRL")
    lines += ["", f"GRPO (same prompts, 8 completions of {a.completion} tokens a step)", ""]
    lines += table(results, GRPO_CASES, "trl_grpo", None, "TRL", SAMPLE_COLUMNS, "samples_per_s")
    lines += ["", "Training loss every 5 steps (learning rate):", ""]
    lines += [f"- {case}: {r['losses']} ({r.get('learning_rate')})" for case, r in results.items() if r.get("losses")]
    command = "python benchmarks/gpu_throughput.py " + " ".join(sys.argv[1:])
    return "\n".join(lines + ["", f"command: `{command}`"]) + "\n"


if __name__ == "__main__":
    main()
