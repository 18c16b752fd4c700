"""The report's metric-vs-knob plots (src/posttrain/report/plots.py): the DPO guide's comparison, one panel per
model, one line per dataset, the base model's value as a reference line; y axes that do not exaggerate."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from posttrain.report.plots import plot_metric_vs_knob
from posttrain.report.reading import Job
from posttrain.report.write import write_report


@pytest.fixture(autouse=True)
def agg_backend():
    import matplotlib

    matplotlib.use("Agg")


def job(number: int, model: str, **values) -> Job:
    overrides = {key: str(value) for key, value in values.items() if key != "diversity"}
    return Job(path=Path(f"/nonexistent/{number}"), name=str(number), number=number,
               overrides={"model": model, **overrides}, swept=set(), state="completed",
               metrics={"diversity": values["diversity"]}, model=model)


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def grid() -> list[Job]:
    jobs, number = [], 0
    for model, level in (("qwen3-4b", 0.40), ("qwen3-8b", 0.50)):
        for dataset, shift in (("embedding_diversity", 0.02), ("quality_based", 0.0)):
            for beta in (0.05, 0.1, 0.2):
                jobs.append(job(number, model, dataset=dataset, dpo_beta=beta, diversity=level + shift + beta / 10))
                number += 1
    return jobs


def test_a_swept_model_gets_a_panel_each_with_its_base_line(tmp_path):
    one = plot_metric_vs_knob(grid()[:6], "diversity", "dpo_beta", ["dataset"], 8, tmp_path / "one.png")
    two = plot_metric_vs_knob(grid(), "diversity", "dpo_beta", ["dataset", "model"], 8, tmp_path / "two.png",
                              baselines={"qwen3-4b": 0.38, "qwen3-8b": 0.47})
    assert one and two
    # two panels side by side: a wider figure of the same height
    (w1, h1), (w2, h2) = png_size(one), png_size(two)
    assert h1 == h2 and w2 > 1.3 * w1


def test_the_figure_draws_the_panels_lines_and_base_values(tmp_path, monkeypatch):
    import matplotlib.figure

    seen = {}

    def keep(figure, path, **kwargs):  # look at the figure instead of the file
        seen["axes"] = [axes for axes in figure.axes]

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    plot_metric_vs_knob(grid(), "diversity", "dpo_beta", ["dataset", "model"], 8, tmp_path / "x.png",
                        baselines={"qwen3-8b": 0.47})
    left, right = seen["axes"]
    assert (left.get_title(), right.get_title()) == ("model=qwen3-4b", "model=qwen3-8b")
    labels = lambda axes: sorted(line.get_label() for line in axes.get_lines())  # noqa: E731
    assert labels(left) == ["dataset=embedding_diversity", "dataset=quality_based"]
    assert labels(right) == ["base model (0.47)", "dataset=embedding_diversity", "dataset=quality_based"]
    base = next(line for line in right.get_lines() if line.get_label().startswith("base"))
    assert list(base.get_ydata()) == [0.47, 0.47]
    # a diversity score is bounded: the shared y axis runs from 0 to about 1
    assert left.get_ylim()[0] == 0 and left.get_ylim()[1] == pytest.approx(1.02)


def fake_run(root: Path, model: str, dataset: str, beta: float, value: float) -> None:
    """A finished diversity_dpo grid job, as Hydra and posttrain leave it (nothing trains)."""
    overrides = [f"model={model}", f"dataset={dataset}", f"dpo_beta={beta}"]
    job = root / "grid" / ",".join(overrides)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "config.yaml").write_text(yaml.safe_dump({"model": {"name": model}, "dataset": {"name": dataset}}))
    (job / "status.json").write_text(json.dumps({"state": "completed"}))
    (job / "results.json").write_text(json.dumps({"embedding_diversity": value, "train_loss": 0.6}))


def test_the_report_draws_the_dpo_guides_comparison_with_the_evaluated_base_models(tmp_path, monkeypatch):
    """The diversity_dpo grid's report: diversity against beta, a panel per model, the base model's value
    from `posttrain.evaluate model=<name>` (evaluations/<name>/eval-diversity.json) as its reference line."""
    import matplotlib.figure

    for grid_job in grid():
        fake_run(tmp_path, grid_job.model, grid_job.overrides["dataset"], float(grid_job.overrides["dpo_beta"]),
                 grid_job.metrics["diversity"])
    base = tmp_path / "evaluations" / "qwen3-4b"
    base.mkdir(parents=True)
    (base / "eval-diversity.json").write_text(json.dumps({"evaluator": "diversity",
                                                          "metrics": {"embedding_diversity": 0.31}}))
    drawn = {}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda figure, path, **kwargs: drawn.setdefault(Path(path).name, figure.axes))
    monkeypatch.chdir(tmp_path)  # baselines: evaluations, relative to where the report runs
    cfg = OmegaConf.create({"dir": str(tmp_path / "grid"), "out": None, "metrics": None, "curves": ["loss"],
                            "max_lines": 10, "baselines": "evaluations"})
    report = write_report(cfg)
    # the result (embedding_diversity) is plotted against beta; train_loss is the same everywhere: no plot
    assert [p.name for p in report.plots] == ["embedding_diversity_vs_dpo_beta.png"]
    left, right = drawn["embedding_diversity_vs_dpo_beta.png"]
    assert (left.get_title(), right.get_title()) == ("model=qwen3-4b", "model=qwen3-8b")
    assert "base model (0.31)" in [line.get_label() for line in left.get_lines()]
    assert not [line for line in right.get_lines() if line.get_label().startswith("base")]  # not evaluated


def test_a_nested_seed_is_spread_not_an_axis_and_legends_use_short_key_names(tmp_path, monkeypatch):
    """experiment=compare_preference sweeps stages.pref.seed: the seeds fold into error bars, no plot puts the
    seed on its x axis, and the legend says compare=dpo, not stages.pref.compare=dpo."""
    import matplotlib.figure

    from posttrain.report.reading import numeric_knobs

    jobs = []
    for number, (method, rate, seed, value) in enumerate(
            [(m, r, s, v) for m, base in (("dpo", 0.6), ("kto", 0.5)) for r in (0.0003, 0.001) for s, v in
             ((1, base), (2, base + 0.04))]):
        jobs.append(Job(path=Path(f"/nonexistent/{number}"), name=str(number), number=number, swept=set(),
                        overrides={"stages.pref.compare": method, "stages.pref.learning_rate": str(rate),
                                   "stages.pref.seed": str(seed)},
                        state="completed", metrics={"optimal_move_rate": value}, model="tiny"))
    keys = ["stages.pref.learning_rate", "stages.pref.seed", "stages.pref.compare"]
    assert numeric_knobs(jobs, keys) == ["stages.pref.learning_rate"]
    drawn = {}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, path, **k: drawn.update(axes=figure.axes))
    plot_metric_vs_knob(jobs, "optimal_move_rate", "stages.pref.learning_rate", keys[1:], 10, tmp_path / "p.png")
    (axes,) = drawn["axes"]
    assert "mean and sd over seeds" in axes.get_title()
    assert sorted(axes.get_legend_handles_labels()[1]) == ["compare=dpo", "compare=kto"]
    dpo = next(bars for bars in axes.containers if bars.get_label() == "compare=dpo")
    assert list(dpo.lines[0].get_ydata()) == pytest.approx([0.62, 0.62])  # the mean of two seeds at each rate
