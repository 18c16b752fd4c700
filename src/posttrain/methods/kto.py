"""conf/method/kto.yaml: Kahneman-Tversky Optimization from unpaired desirable/undesirable completions
with TRL's KTOTrainer (preference pairs are split into one of each)."""

from trl import KTOConfig, KTOTrainer

from posttrain.methods.common import TrainerInputs


def build_kto(inputs: TrainerInputs) -> KTOTrainer:
    return KTOTrainer(
        model=inputs.model,
        ref_model=inputs.reference_copy(),
        args=inputs.trl_config(KTOConfig),
        train_dataset=inputs.data.train,
        eval_dataset=inputs.data.eval,
        processing_class=inputs.tokenizer,
        peft_config=inputs.peft_config,
        callbacks=inputs.callbacks,
    )
