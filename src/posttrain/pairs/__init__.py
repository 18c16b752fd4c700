"""The DPO pair builder, `python -m posttrain.pairs criterion=embedding|quality|llm_judge`: prompts with
several candidate responses (candidates.py) -> one pair per prompt, chosen = the candidate the criterion
scores highest, rejected = the lowest (build.py). Criteria: embedding.py, quality.py, judge.py."""
