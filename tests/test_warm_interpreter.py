"""The tests' commands run in children of a warm interpreter (tests/warm_interpreter.py); a child must look to
the command exactly like the fresh `python -m <module>` a user's shell starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import WARM, run_posttrain

PROBE = '''
import json, os, sys
import numpy
print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0], "name": __name__,
                  "offline": os.environ.get("HF_HUB_OFFLINE"), "stdin": sys.stdin.read(),
                  "random": float(numpy.random.rand())}))
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
'''


@pytest.fixture
def probe(workdir):
    (workdir / "probe.py").write_text(PROBE)
    (workdir / "crash.py").write_text("raise ValueError('crashed')\n")
    (workdir / "hang.py").write_text("import time\ntime.sleep(60)\n")
    return workdir


def needs_warm():
    if not WARM.serves(dict(os.environ)):
        pytest.skip(f"no warm interpreter in this session ({WARM.refused or 'POSTTRAIN_TESTS_FRESH is set'})")


def test_a_warm_child_sees_what_a_fresh_interpreter_sees(probe):
    needs_warm()
    warm = run_posttrain(["3", "x"], probe, module="probe", input_text="typed\n")
    fresh = run_posttrain(["3", "x"], probe, module="probe", input_text="typed\n", fresh=True)
    assert warm.returncode == fresh.returncode == 3
    assert warm.stderr == fresh.stderr == "to stderr\n"
    seen_warm, seen_fresh = json.loads(warm.stdout), json.loads(fresh.stdout)
    for key in ("argv", "cwd", "path0", "name", "offline", "stdin"):
        assert seen_warm[key] == seen_fresh[key], key
    assert seen_warm["argv"] == [str(probe / "probe.py"), "3", "x"] and seen_warm["stdin"] == "typed\n"
    again = json.loads(run_posttrain(["0"], probe, module="probe").stdout)
    # each child seeds numpy's global generator afresh, as a fresh interpreter does
    assert again["random"] != seen_warm["random"]
    assert again["stdin"] == ""


def test_a_crash_and_a_timeout_come_back_as_from_a_fresh_interpreter(probe):
    needs_warm()
    crash = run_posttrain([], probe, module="crash")
    assert crash.returncode == 1 and crash.stderr.rstrip().endswith("ValueError: crashed")
    with pytest.raises(subprocess.TimeoutExpired):
        run_posttrain([], probe, module="hang", timeout=2)
    assert run_posttrain(["0"], probe, module="probe").returncode == 0  # the warm interpreter goes on serving


def test_a_command_with_its_own_environment_runs_fresh(probe, monkeypatch):
    needs_warm()
    calls = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
    result = run_posttrain(["0"], probe, module="probe", env={"HF_HUB_OFFLINE": "0"})
    assert json.loads(result.stdout)["offline"] == "0"
    assert calls and calls[0][0][:3] == [sys.executable, "-m", "probe"]
