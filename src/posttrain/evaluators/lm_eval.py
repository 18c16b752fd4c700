"""The lm-evaluation-harness evaluator (eval=lm_eval): EleutherAI's harness scores the model in memory on
its tasks by name (arc_easy, hellaswag, mmlu, ...: their data comes from the Hugging Face hub) or on custom
task YAMLs from a folder (eval.include_path; offline, the shipped posttrain_arith task over a local JSONL
file). An optional extra: `pip install -e '.[eval]'`.

Every numeric figure the harness reports becomes `lm_eval/<task>/<metric>` (`acc`, `acc_stderr`; a metric
under a filter other than the default reads `exact_match/strict-match`); samples.jsonl holds each scored
example's prompt, target, the model's response and its per-example scores."""

from __future__ import annotations

import math
import random
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from posttrain.errors import PosttrainError
from posttrain.evaluators import EvalOutput, EvalRequest

# How a user finds task names (the harness's own command lists them).
FIND_TASKS = "list the names with `lm-eval ls tasks` (add `--include_path DIR` for a folder of task YAMLs)"
# The harness's name for a metric's default filter ("acc,none"), dropped from metric keys.
DEFAULT_FILTER = "none"


def _harness():
    """lm_eval's simple_evaluate and its Hugging Face model wrapper, or the install line when it is missing."""
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        raise PosttrainError("eval=lm_eval needs lm-evaluation-harness", "pip install -e '.[eval]'") from None
    return simple_evaluate, HFLM


@lru_cache(maxsize=4)
def _task_manager(include_path: str | None, include_defaults: bool):
    """The harness's task index (built once per process: indexing the built-in tasks takes seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=include_defaults)


def task_manager(tasks: list[str], include_path: str | None):
    """The index that knows `tasks`: the include_path folder alone when it defines them all (no need to
    index the harness's hundreds of built-in tasks), else the built-in tasks and the folder together."""
    if include_path and set(tasks) <= set(_task_manager(include_path, False).all_subtasks):
        return _task_manager(include_path, False)
    manager = _task_manager(include_path, True)
    unknown = [name for name in tasks if name not in manager.all_tasks]
    if unknown:
        where = f"or eval.include_path={include_path}" if include_path else "(eval.include_path=null)"
        raise PosttrainError(f"no lm-evaluation-harness task named {', '.join(unknown)} in its own tasks {where}",
                             FIND_TASKS)
    return manager


def task_settings(settings: dict) -> tuple[list[str], str | None]:
    """eval.tasks as a list and eval.include_path as an absolute folder (None when unset)."""
    tasks = settings.get("tasks") or []
    tasks = [tasks] if isinstance(tasks, str) else [str(name) for name in tasks]
    if not tasks:
        raise PosttrainError("eval=lm_eval has no task to run (eval.tasks=[])",
                             "name them: eval.tasks=[arc_easy,hellaswag], or offline eval.tasks=[posttrain_arith] "
                             "eval.include_path='${posttrain.example:lm_eval_task}'")
    include_path = settings.get("include_path")
    if include_path:
        folder = Path(str(include_path)).expanduser().resolve()
        if not folder.is_dir():
            raise PosttrainError(f"eval.include_path={include_path} is not a folder",
                                 "point it at a folder of lm-evaluation-harness task YAMLs, or set it to null")
        include_path = str(folder)
    return tasks, include_path or None


def metric_key(task: str, name: str) -> str:
    """'acc,none' -> lm_eval/<task>/acc; 'exact_match,strict-match' -> lm_eval/<task>/exact_match/strict-match."""
    metric, _, filter_name = name.partition(",")
    return f"lm_eval/{task}/{metric}" + (f"/{filter_name}" if filter_name and filter_name != DEFAULT_FILTER else "")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def task_metrics(results: dict) -> dict[str, float]:
    """Every numeric figure of the harness's per-task (and per-group) results, under readable keys, in the
    harness's order (a task's main metric first); an uncomputed stderr ("N/A") is left out. Each task's
    `sample_len` (the examples scored) comes last."""
    metrics, counts = {}, {}
    for task, figures in results.items():
        for name, value in figures.items():
            if _is_number(value) and ("," in name or name == "sample_len"):
                number = value.item() if isinstance(value, np.number) else value
                (metrics if "," in name else counts)[metric_key(task, name)] = number
    return {**metrics, **counts}


def _response(sample: dict, output_type: str):
    """What the model answered: the generated text, the most likely choice, or the loglikelihoods."""
    responses = sample.get("filtered_resps")
    if output_type == "generate_until" and responses:
        return responses[0]
    if output_type == "multiple_choice" and responses:
        scores = [r[0] if isinstance(r, (list, tuple)) else r for r in responses]
        best = max(range(len(scores)), key=lambda i: float(scores[i]))
        return sample["arguments"][best][1].strip()
    return responses


def _target(sample: dict, output_type: str):
    target = sample.get("target")
    if output_type == "multiple_choice" and isinstance(target, int) and 0 <= target < len(sample["arguments"]):
        return sample["arguments"][target][1].strip()  # the choice's text, not its index
    return target


def trimmed_samples(samples: dict, configs: dict) -> list[dict]:
    """The harness's logged examples of every task, each cut down to its prompt, target, the model's
    response and the example's numeric scores (acc, acc_norm, exact_match, ...)."""
    trimmed = []
    for task, records in samples.items():
        output_type = configs.get(task, {}).get("output_type", "")
        for sample in records:
            arguments = sample.get("arguments") or [[""]]
            record = {"task": task, "doc_id": sample.get("doc_id"), "prompt": arguments[0][0],
                      "target": _target(sample, output_type), "response": _response(sample, output_type)}
            record.update({m: float(sample[m]) for m in sample.get("metrics", ())
                           if isinstance(sample.get(m), (bool, np.bool_)) or _is_number(sample.get(m))})
            trimmed.append(record)
    return trimmed


@contextmanager
def kept_random_state():
    """The harness seeds Python's, NumPy's and torch's global generators: put them back afterwards, so an
    evaluation during training leaves the training's random stream as it was."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def check(settings: dict) -> None:
    """Before any training: the harness is installed, eval.tasks names tasks it knows, eval.include_path is a
    folder (the task index this builds is kept for the evaluation at the end)."""
    _harness()
    task_manager(*task_settings(settings))


def evaluate(model, tokenizer, request: EvalRequest) -> EvalOutput:
    """The harness on eval.tasks with the model in memory; request.limit (else eval.limit) examples per
    task at most: the first ones of each task's split, as the harness's own --limit takes them."""
    simple_evaluate, HFLM = _harness()
    settings = request.settings
    tasks, include_path = task_settings(settings)
    manager = task_manager(tasks, include_path)
    limit = request.limit if request.limit is not None else settings.get("limit")
    num_fewshot = settings.get("num_fewshot")
    was_training = model.training
    try:
        with torch.no_grad(), kept_random_state():
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=int(settings.get("batch_size") or 1))
            out = simple_evaluate(
                model=lm, tasks=tasks, task_manager=manager,
                num_fewshot=None if num_fewshot is None else int(num_fewshot),
                limit=None if limit is None else int(limit), log_samples=True,
                random_seed=request.seed, numpy_random_seed=request.seed, torch_random_seed=request.seed,
                fewshot_random_seed=request.seed)
    except ConnectionError as err:  # a hub task's data while offline (datasets raises the builtin one)
        raise PosttrainError(f"eval=lm_eval cannot fetch a task's data: {str(err).splitlines()[0]}",
                             "run once online (the datasets cache keeps it), or use a local task YAML in "
                             "eval.include_path") from None
    finally:
        model.train(was_training)
    return EvalOutput(task_metrics(out["results"]), trimmed_samples(out.get("samples", {}), out.get("configs", {})))
