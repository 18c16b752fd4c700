"""What the trainer builder receives (TrainerInputs), and the TRL config fields shared by all methods."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf
from transformers import TrainingArguments

from posttrain.data.loading import PreparedData
from posttrain.evaluation import best_checkpoint_fields
from posttrain.hardware import Hardware
from posttrain.registry import Method
from posttrain.rundir import RunDir


# transformers renamed gradient_checkpointing to activation_checkpointing (the old name warns from then on).
CHECKPOINTING_FIELD = (
    "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
    else "gradient_checkpointing"
)


@dataclass(frozen=True)
class Knobs:
    """The run's settings every TRL config takes: conf/train.yaml's top-level knobs, the model's max_length
    and the run's name (wandb_name, else the run directory's)."""

    learning_rate: float
    batch_size: int
    num_epochs: float
    max_steps: int
    seed: int
    max_length: int
    run_name: str


@dataclass
class TrainerInputs:
    """What the run hands the trainer builder: its method row and config group, the knobs, the training
    group, and what the run has loaded and resolved."""

    method: Method
    # conf/method/: args (the TRL config's fields), and rewards or teacher where the row needs them
    method_cfg: DictConfig
    knobs: Knobs
    # conf/training/: schedule, logging, evaluation and checkpoint cadence
    training: DictConfig
    model: Any
    tokenizer: Any
    data: PreparedData
    peft_config: Any  # peft.LoraConfig, or None for full fine-tuning
    callbacks: list
    run_dir: RunDir
    hardware: Hardware
    report_to: list[str]

    def reference_copy(self, args=None):
        """DPO-family reference model: with LoRA, TRL scores the reference by disabling the adapter (no
        second copy, so None); with precompute_ref_log_probs in `args` (the method's TRL config), TRL scores
        the policy once before training (no copy either); otherwise full fine-tuning gets a frozen copy made
        here, so models with random init or without a hub name have a valid reference too."""
        from trl.experimental.utils import create_reference_model

        if self.peft_config is not None or getattr(args, "precompute_ref_log_probs", False):
            return None
        return create_reference_model(self.model)

    @contextmanager
    def reference_on_disk(self, args) -> Iterator[None]:
        """For trainers that build their own reference by loading the policy's config path (GRPO and RLOO
        with a KL term): with full fine-tuning the starting weights are saved once under the run directory
        (reference_model/, main process first, renamed into place when complete) and the config names that
        directory while the trainer is built, so random-init models, merged run directories and local models
        get the same frozen start as DPO's copy. With LoRA (the adapter-disabled base) or beta=0 nothing is
        saved."""
        if self.peft_config is not None or not getattr(args, "beta", 0.0):
            yield
            return
        target = self.run_dir.path / "reference_model"
        with args.main_process_first(local=False, desc="saving the reference model"):
            if not (target / "config.json").exists():
                staging = target.with_name(".reference_model.tmp")
                shutil.rmtree(staging, ignore_errors=True)
                self.model.save_pretrained(str(staging))
                staging.rename(target)
        config = self.model.config
        named = config._name_or_path
        config._name_or_path = str(target)
        try:
            yield
        finally:
            config._name_or_path = named

    def trainer_kwargs(self, args) -> dict[str, Any]:
        """What every TRL trainer takes: the model, its TRL config `args`, the data splits, the tokenizer, the
        LoRA config and posttrain's callbacks. The builder adds what the method's row asks for."""
        return {
            "model": self.model,
            "args": args,
            "train_dataset": self.data.train,
            "eval_dataset": self.data.eval,
            "processing_class": self.tokenizer,
            "peft_config": self.peft_config,
            "callbacks": self.callbacks,
        }

    def trl_config(self, config_class):
        """The method's TRL config object built from config_fields(); shared fields the class does not have
        (e.g. max_length for online methods) are left out, while an unknown method.args field is an error."""
        fields = self.config_fields()
        own = set(OmegaConf.to_container(self.method_cfg.args, resolve=True))
        known = config_class.__dataclass_fields__
        return config_class(**{k: v for k, v in fields.items() if k in known or k in own})

    def config_fields(self) -> dict[str, Any]:
        """Fields for the method's TRL config: top-level knobs, training group, hardware (its resolved
        micro-batch, kernels, packing and reference settings), then method.args, which win."""
        knobs, training = self.knobs, self.training
        evaluating = self.data.eval is not None and training.eval_steps > 0
        fields = {
            "output_dir": str(self.run_dir.checkpoints),
            "run_name": knobs.run_name,
            "learning_rate": knobs.learning_rate,
            "per_device_train_batch_size": knobs.batch_size,
            "per_device_eval_batch_size": knobs.batch_size,
            "num_train_epochs": knobs.num_epochs,
            "max_steps": knobs.max_steps,
            "seed": knobs.seed,
            "data_seed": knobs.seed,
            "gradient_accumulation_steps": int(training.gradient_accumulation_steps),
            "lr_scheduler_type": training.lr_scheduler_type,
            "warmup_steps": float(training.warmup_ratio),  # < 1 is read as a fraction of all steps
            "weight_decay": float(training.weight_decay),
            "max_grad_norm": float(training.max_grad_norm),
            "logging_steps": int(training.logging_steps),
            "save_strategy": "steps" if training.save_steps > 0 else "no",
            "save_steps": max(int(training.save_steps), 1),
            "save_total_limit": int(training.save_total_limit),
            "eval_strategy": "steps" if evaluating else "no",
            "eval_steps": int(training.eval_steps) if evaluating else None,
            CHECKPOINTING_FIELD: bool(training.gradient_checkpointing),
            "report_to": self.report_to,
            "disable_tqdm": True,
            "include_num_input_tokens_seen": "non_padding",
            # skip: the trainer's filter keeps a NaN/inf loss out of the logged average; stop: no filter (it reads
            # every micro-batch's loss back, a GPU sync each), the bad step's line reads nan and training ends
            "logging_nan_inf_filter": training.on_nonfinite_loss == "skip",
            "max_length": knobs.max_length,
            **self.hardware.training_arguments(),
            **self.hardware.method_arguments(self.method.name),
        }
        if evaluating and training.get("keep_best"):
            fields.update(best_checkpoint_fields(str(training.keep_best), str(training.keep_best_direction)))
        fields.update(OmegaConf.to_container(self.method_cfg.args, resolve=True))
        return fields
