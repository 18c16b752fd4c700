"""The non-finite guard drops a bad step's update: on the host for plain optimizers, inside the kernel (no
wait on the device) for fused ones, whose flags are read back only when the trainer logs, saves or stops."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from posttrain.run.callbacks import NonFiniteGuard


class AcceleratedOptimizer:  # accelerate's wrapper: the torch optimizer is .optimizer
    def __init__(self, optimizer):
        self.optimizer = optimizer

    def step(self):
        self.optimizer.step()


def control(**flags):
    return SimpleNamespace(**{"should_log": False, "should_save": False, "should_evaluate": False,
                              "should_training_stop": False, **flags})


def train(mode: str, fused: bool, bad_step: int, steps: int = 4, log_every: int = 2):
    """A few real AdamW steps on a linear model, the loss of `bad_step` (1-based) poisoned; returns the guard,
    the weights before/after each step and the last control."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    inner = torch.optim.AdamW(model.parameters(), lr=0.1, fused=fused)
    optimizer = AcceleratedOptimizer(inner)
    guard = NonFiniteGuard(mode)
    state = SimpleNamespace(global_step=0, max_steps=steps)
    changed, flow = [], control()
    for step in range(1, steps + 1):
        model.zero_grad()
        loss = model(torch.randn(2, 4)).square().sum() * (float("nan") if step == bad_step else 1.0)
        loss.backward()
        before = model.weight.detach().clone()
        flow = control(should_log=step % log_every == 0)
        guard.on_pre_optimizer_step(None, state, flow, model=model, optimizer=optimizer)
        optimizer.step()
        changed.append(not torch.equal(before, model.weight))
        state.global_step = step
        guard.on_step_end(None, state, flow)
        if flow.should_training_stop:
            break
    return guard, changed, flow, inner, model


@pytest.mark.parametrize("fused", [False, True], ids=["host", "fused"])
def test_a_bad_step_is_skipped_and_training_goes_on(fused):
    guard, changed, flow, inner, model = train("skip", fused, bad_step=3)
    assert changed == [True, True, False, True]
    assert guard.bad_steps == [3] and not flow.should_training_stop
    assert torch.isfinite(model.weight).all()
    assert float(inner.state[model.weight]["step"]) == 3  # the skipped step left the optimizer state alone


def test_a_fused_optimizer_reads_the_flags_back_only_when_the_trainer_logs():
    guard, changed, flow, inner, model = train("skip", fused=True, bad_step=1, steps=1, log_every=2)
    # the last step always reads back (state.max_steps reached)
    assert guard.bad_steps == [1] and changed == [False]
    guard = NonFiniteGuard("skip")
    state = SimpleNamespace(global_step=0, max_steps=10)
    model = torch.nn.Linear(2, 1)
    optimizer = AcceleratedOptimizer(torch.optim.AdamW(model.parameters(), fused=True))
    model(torch.ones(1, 2)).mul(float("nan")).sum().backward()
    guard.on_pre_optimizer_step(None, state, control(), model=model, optimizer=optimizer)
    optimizer.step()
    state.global_step = 1
    guard.on_step_end(None, state, control())  # not a log, save, eval or stop step: nothing read back yet
    assert guard.bad_steps == []
    guard.on_step_end(None, state, control(should_save=True))
    assert guard.bad_steps == [1]


@pytest.mark.parametrize("fused", [False, True], ids=["host", "fused"])
def test_stop_mode_stops_and_drops_the_save_at_the_next_read_back(fused):
    guard, changed, flow, _, _ = train("stop", fused, bad_step=3, steps=6, log_every=2)
    # fused: the flag of step 3 is read back at step 4's log; step 4's update was a good one
    assert guard.bad_steps == [3]
    assert changed == ([True, True, False, True] if fused else [True, True, False])
    assert flow.should_training_stop and not flow.should_save
