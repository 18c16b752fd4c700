"""Scoring candidate responses: reading prompts with their candidates, and the three criteria (sentence
embedding distance, a quality column, a local judge model's rating). The pair builder (posttrain.pairs) turns
the scores into DPO pairs; the diversity evaluator (posttrain.evaluators.diversity) scores samples with them."""
