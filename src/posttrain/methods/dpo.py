"""conf/method/dpo.yaml: direct preference optimization (and its loss variants) with TRL's DPOTrainer."""

from trl import DPOConfig, DPOTrainer
from trl.experimental.utils import create_reference_model

from posttrain.methods.common import TrainerInputs


def build_dpo(inputs: TrainerInputs) -> DPOTrainer:
    # With LoRA, TRL scores the reference by disabling the adapter: no second copy. Full fine-tuning gets a
    # frozen copy made here, so models with random init or without a hub name have a valid reference too.
    ref_model = None if inputs.peft_config is not None else create_reference_model(inputs.model)
    return DPOTrainer(
        model=inputs.model,
        ref_model=ref_model,
        args=DPOConfig(**inputs.config_fields()),
        train_dataset=inputs.data.train,
        eval_dataset=inputs.data.eval,
        processing_class=inputs.tokenizer,
        peft_config=inputs.peft_config,
        callbacks=inputs.callbacks,
    )
