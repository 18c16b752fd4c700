"""A warm interpreter for the tests' `python -m posttrain ...` commands.

A training command spends about 6 of its CPU seconds importing torch, transformers, datasets, peft and TRL,
and the suite runs well over a hundred of them. This process imports all that once, then forks one child per
command. The child becomes what `python -m <module> <args>` in a fresh interpreter would be: the command's
working directory, environment (conftest.py sends a command here only when its environment is the one this
process imported under), argv, sys.path[0] = its working directory, its own standard streams (files the
caller reads back) and a freshly seeded numpy generator (Python reseeds `random` at fork itself); it runs the
module as __main__ and exits through the interpreter's normal shutdown (atexit handlers, thread joins, stream
flushes).

It refuses to serve (and conftest.py falls back to real subprocesses) when the imports printed anything,
since a fresh run would print that too, or left a thread other than the main one and allocators' own
background threads running, which a fork would not carry over.

Protocol, one JSON object per line: it answers {"ready": true} or {"refused": why} once, then reads requests
{"module", "args", "cwd", "env", "stdin", "stdout", "stderr", "timeout"} (paths of files for the streams;
stdin null = /dev/null) and answers each with {"returncode": n} or {"timeout": true} after killing the child.
End of input ends it.
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import signal
import sys
import tempfile
import time

# threads a fork may leave behind: pyarrow's jemalloc runs one, and its fork handlers restart it in the child
HARMLESS_THREADS = {"jemalloc_bg_thd"}


def preload() -> None:
    """Import what a training command imports, the trainer classes of the registry's rows included, except
    TRL's experimental ones: importing those warns, and a run of such a method must show that warning itself."""
    import importlib

    import posttrain.cli  # noqa: F401
    import posttrain.evaluation  # noqa: F401
    import posttrain.methods.build  # noqa: F401
    import posttrain.run.job  # noqa: F401
    import posttrain.run.train  # noqa: F401
    from posttrain.registry import METHODS

    for method in METHODS.values():
        for path in (method.trainer, method.config):
            if not path.startswith("trl.experimental"):
                importlib.import_module(path.split(":")[0])


def stray_threads() -> list[str]:
    names = [open(f"/proc/self/task/{task}/comm").read().strip()
             for task in os.listdir("/proc/self/task") if task != str(os.getpid())]
    return [name for name in names if name not in HARMLESS_THREADS]


def become(request: dict, protocol_fds: tuple[int, ...]) -> None:
    """In the forked child: turn into `python -m <module> <args>` and run it; never returns."""
    for fd in protocol_fds:
        os.close(fd)
    for fd, path, flags in ((0, request["stdin"] or os.devnull, os.O_RDONLY),
                            (1, request["stdout"], os.O_WRONLY),
                            (2, request["stderr"], os.O_WRONLY)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path.insert(0, os.getcwd())  # what `python -m` puts first
    if "numpy" in sys.modules:  # Python reseeds `random` in a forked child; numpy's global generator stays
        sys.modules["numpy"].random.seed()
    sys.argv = [request["module"], *request["args"]]
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    sys.exit(0)


def wait(pid: int, timeout: float) -> int | None:
    """The child's exit code (negative: killed by that signal), or None after killing it at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.02)


def lines(fd: int):
    """The lines written to fd, read without a Python file object (a forked child closes fd cleanly)."""
    pending = b""
    while chunk := os.read(fd, 65536):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete


def main() -> None:
    requests_fd, replies_fd, stderr_fd = os.dup(0), os.dup(1), os.dup(2)

    def reply(message: dict) -> None:
        os.write(replies_fd, (json.dumps(message) + "\n").encode())

    sys.path.pop(0)  # this file's folder; a child gets its own working directory instead
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    with tempfile.TemporaryFile() as printed:
        for fd in (1, 2):
            os.dup2(printed.fileno(), fd)
        try:
            preload()
        except Exception as error:  # noqa: BLE001 - any failure means: run the commands fresh, and say why
            print(f"{type(error).__name__}: {error}")
        sys.stdout.flush()
        sys.stderr.flush()
        printed.seek(0)
        output = printed.read().decode(errors="replace")
    os.dup2(null, 1)
    os.dup2(stderr_fd, 2)
    threads = stray_threads()
    if output.strip() or threads:
        why = f"the imports printed {output[:300]!r}" if output.strip() else f"the imports left threads {threads}"
        reply({"refused": why})
        return
    gc.freeze()  # the imported objects stay out of the children's collections, which would copy their pages
    reply({"ready": True})
    for line in lines(requests_fd):
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            become(request, (requests_fd, replies_fd, stderr_fd, null))
        returncode = wait(pid, request["timeout"])
        reply({"timeout": True} if returncode is None else {"returncode": returncode})


if __name__ == "__main__":
    main()
