"""The import graph of src/posttrain has no circle, and no import points from a lower layer up to a higher one.

Layers, bottom to top; a module imports modules of its own layer and of the layers below it:

  foundations  errors, redact, rundir, options, conf: what every part uses (run directories and atomic
               writes, the one error type, credential masking, named config options); they import nothing
               of posttrain above them
  parts        the building blocks, each about one config group or concern: registry, data/, models/,
               hardware, tictactoe/, rewards, adapters, evaluation, logger, checks, sweep, naming, ...
  methods      methods/: how a registry row becomes a trainer
  run          run/ (and plan, which run/train.py reports with): executes one job, composes nothing
  compose      the front door: a command line -> the checked configs it runs
  commands     the entry points: cli, __main__, and the helper commands report/, pairs/, sample

Module-level imports must form no circle and never go up. A function-level import may go up only where it
is listed in LAZY_UPWARD with the reason; NOT_YET_FIXED lists the upward module-level imports that issue 11
still has to remove (delete an entry once its import is gone).
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"

LAYERS: list[tuple[str, list[str]]] = [
    ("foundations", ["posttrain", "posttrain.errors", "posttrain.redact", "posttrain.rundir", "posttrain.options",
                     "posttrain.conf", "posttrain.progress"]),
    ("parts", ["posttrain.registry", "posttrain.data", "posttrain.models", "posttrain.hardware",
               "posttrain.tictactoe", "posttrain.evaluators", "posttrain.scoring", "posttrain.rewards", "posttrain.adapters", "posttrain.evaluation",
               "posttrain.logger", "posttrain.checks", "posttrain.schema", "posttrain.sweep", "posttrain.naming",
               "posttrain.learning_rate", "posttrain.speed", "posttrain.distributed", "posttrain.memory",
               "posttrain.summary"]),
    ("methods", ["posttrain.methods"]),
    ("run", ["posttrain.run", "posttrain.plan"]),
    ("compose", ["posttrain.compose"]),
    ("commands", ["posttrain.cli", "posttrain.__main__", "posttrain.report", "posttrain.pairs", "posttrain.sample",
                  "posttrain.chat", "posttrain.evaluate"]),
]

# (importer, imported) -> why a function-level import may go up
LAZY_UPWARD: dict[tuple[str, str], str] = {
    ("posttrain.registry", "posttrain.methods.build"):
        "a registry row names its trainer builder; the builder (and TRL) is imported only when a run builds it",
    ("posttrain.plan", "posttrain.compose"):
        "the launch plan composes each stage's config the way the front door does, only when it is printed",
}

# (importer, imported) -> the issue item that removes this upward module-level import
NOT_YET_FIXED: dict[tuple[str, str], str] = {}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SOURCE / "posttrain").rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imports(name: str, path: Path, known: dict[str, Path]) -> set[tuple[str, bool]]:
    """(imported posttrain module, whether the import sits inside a function) for one module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[tuple[str, bool]] = set()

    def add(target: str, lazy: bool) -> None:
        while target and target not in known:  # from posttrain.x import a_function -> posttrain.x
            target = target.rpartition(".")[0]
        if target.startswith("posttrain") and target != name:
            found.add((target, lazy))

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, lazy)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([child.module] if child.module else []))
                for alias in child.names:
                    add(f"{base}.{alias.name}", lazy)
            else:
                visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def layer_of(module: str) -> int | None:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return best[0] if best else None


def graph() -> dict[str, set[tuple[str, bool]]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer():
    missing = [name for name in modules() if layer_of(name) is None]
    assert not missing, f"add these modules to a layer in LAYERS (tests/test_layers.py): {missing}"


def circles(edges: dict[str, list[str]]) -> list[str]:
    state: dict[str, str] = {}
    found: list[str] = []

    def walk(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in edges.get(name, []):
            if state.get(target) == "open":
                found.append(" -> ".join((path + [name])[(path + [name]).index(target):] + [target]))
            elif target not in state:
                walk(target, path + [name])
        state[name] = "done"

    for name in edges:
        if name not in state:
            walk(name, [])
    return found


def test_module_level_imports_form_no_circle():
    edges = {name: sorted(t for t, lazy in found if not lazy) for name, found in graph().items()}
    found = circles(edges)
    assert not found, "import circles:\n  " + "\n  ".join(found)


def test_packages_form_no_circle_even_through_function_level_imports():
    """data/ -> checks -> data/ is a circle even when one side imports inside a function."""

    def unit(module: str) -> str:  # posttrain.data.files -> posttrain.data
        return ".".join(module.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for name, found in graph().items():
        for target, _ in found:
            if unit(name) != unit(target) and (name, target) not in LAZY_UPWARD:
                edges.setdefault(unit(name), set()).add(unit(target))
    found = circles({name: sorted(targets) for name, targets in edges.items()})
    assert not found, "circles between packages and modules:\n  " + "\n  ".join(found)


def test_no_import_points_up_a_layer():
    upward = []
    for name, found in sorted(graph().items()):
        for target, lazy in sorted(found):
            low, high = layer_of(name), layer_of(target)
            if low is None or high is None or high <= low:
                continue
            if (name, target) in NOT_YET_FIXED or (lazy and (name, target) in LAZY_UPWARD):
                continue
            kind = "a function-level" if lazy else "a module-level"
            upward.append(f"{name} ({LAYERS[low][0]}) has {kind} import of {target} ({LAYERS[high][0]})")
    assert not upward, "imports that point up a layer (move the code down, or, for a function-level import "\
        "that must stay, list it in LAZY_UPWARD with the reason):\n  " + "\n  ".join(upward)
