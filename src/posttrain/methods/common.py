"""What every method factory receives, and the TRL config fields shared by all methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from transformers import TrainingArguments

from posttrain.data.loading import PreparedData
from posttrain.hardware import Hardware
from posttrain.rundir import RunDir


# transformers renamed gradient_checkpointing to activation_checkpointing (the old name warns from then on).
CHECKPOINTING_FIELD = (
    "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
    else "gradient_checkpointing"
)


@dataclass
class TrainerInputs:
    cfg: DictConfig
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

    def trainer_kwargs(self, config_class) -> dict[str, Any]:
        """What every TRL trainer takes: the model, its TRL config, the data splits, the tokenizer, the
        LoRA config and posttrain's callbacks. A factory adds what is particular to its method."""
        return {
            "model": self.model,
            "args": self.trl_config(config_class),
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
        own = set(OmegaConf.to_container(self.cfg.method.args, resolve=True))
        known = config_class.__dataclass_fields__
        return config_class(**{k: v for k, v in fields.items() if k in known or k in own})

    def config_fields(self) -> dict[str, Any]:
        """Fields for the method's TRL config: top-level knobs, training group, hardware (its resolved
        micro-batch, kernels, packing and reference settings), then method.args, which win."""
        cfg, training = self.cfg, self.cfg.training
        evaluating = self.data.eval is not None and training.eval_steps > 0
        fields = {
            "output_dir": str(self.run_dir.checkpoints),
            "run_name": self.cfg.wandb_name or self.run_dir.name,
            "learning_rate": float(cfg.learning_rate),
            "per_device_train_batch_size": int(cfg.batch_size),
            "per_device_eval_batch_size": int(cfg.batch_size),
            "num_train_epochs": float(cfg.num_epochs),
            "max_steps": int(cfg.max_steps),
            "seed": int(cfg.seed),
            "data_seed": int(cfg.seed),
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
            "max_length": int(cfg.model.max_length),
            **self.hardware.training_arguments(),
            **self.hardware.method_arguments(cfg.method.name),
        }
        fields.update(OmegaConf.to_container(cfg.method.args, resolve=True))
        return fields
