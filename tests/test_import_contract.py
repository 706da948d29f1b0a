"""The import contract: rooms import only earlier layers (README, "What is in it"), the registry and the CLI's
front are TensorFlow-free, and ``import affect_zoo`` loads no TensorFlow Datasets, pandas or TF Serving code.

The graph is read from the source with ``ast`` (imports inside functions count: a lazy import is still a
dependency), so a new module must be given a layer here before it can be imported by anything.
"""
import ast
import json
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "affect_zoo"

#: the layers, earliest first: a room may import rooms of earlier layers and its own modules, nothing later
LAYERS = [
    ("leaves", {"cache", "emotion", "files", "imageio", "text"}),
    ("metrics", {"metrics", "metrics_multilabel"}),
    ("losses", {"losses"}),
    ("layers", {"layers"}),
    ("tasks", {"tasks"}),
    ("components", {"backbones", "balancing"}),
    ("data", {"data"}),
    ("models", {"models"}),
    ("training", {"training"}),
    ("recipes", {"recipes"}),
    ("optimization", {"optimization"}),
    ("families", {"families"}),
    ("registry", {"registry"}),
    ("hub", {"hub"}),
    ("zoo", {"zoo"}),
    ("inference", {"inference"}),
    ("evaluation", {"evaluation"}),
    ("artifacts", {"artifacts"}),
    ("experiments", {"experiments", "explain"}),
    ("export", {"export"}),
    ("serving", {"serving"}),
    ("reports", {"rank", "report"}),
    ("cli", {"cli"}),
]
#: (importing room, imported room): reason, for imports that break the order on purpose; none today
KNOWN_EXCEPTIONS = {}
#: modules whose module-level imports, followed through affect_zoo, reach neither TensorFlow nor Keras (the image
#: room's graph half, ``imageio.graph``, is the one module of a listed room left out)
TENSORFLOW_FREE = {"cache", "emotion", "files", "imageio", "text", "tasks", "recipes", "registry", "hub", "cli"}
HEAVY = ("tensorflow", "keras", "tensorflow_datasets", "tensorflow_serving", "pandas")


def layer_of(room):
    for index, (_, rooms) in enumerate(LAYERS):
        if room in rooms:
            return index
    raise AssertionError(f"affect_zoo.{room} has no layer: add it to LAYERS in {__file__}")


def room_of(module):
    """``affect_zoo.models.semdep`` → ``models``; the package itself → None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports(path):
    """(imported module, at module level?) for every absolute import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.append((child.module, top))
                found.extend((f"{child.module}.{alias.name}", top) for alias in child.names
                             if child.module == "affect_zoo")
            visit(child, inner)

    visit(tree, True)
    return found


def modules():
    """Module name → its file, for every file of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def test_every_room_has_a_layer():
    rooms = {room_of(m) for m in modules()} - {None}
    for room in rooms:
        layer_of(room)


def test_no_room_imports_a_later_layer():
    broken = []
    for module, path in modules().items():
        room = room_of(module)
        if room is None:
            continue  # the package's lazy front (__getattr__) imports nothing itself
        for target, _ in imports(path):
            other = room_of(target) if target.startswith("affect_zoo.") else None
            if other is None or other == room or (room, other) in KNOWN_EXCEPTIONS:
                continue
            if layer_of(other) > layer_of(room):
                broken.append(f"{module} imports {target} ({LAYERS[layer_of(room)][0]} → {LAYERS[layer_of(other)][0]})")
    assert not broken, "\n".join(broken)


def test_the_graph_finds_imports_at_any_depth():
    """The reader itself: a lazy import inside a method counts, and is told apart from a module-level one."""
    found = dict(imports(PACKAGE / "tasks" / "distribution.py"))
    assert found["affect_zoo.layers.circle_head"] is False and found["affect_zoo.emotion"] is True
    assert dict(imports(PACKAGE / "inference.py"))["tensorflow"] is True


def test_tensorflow_free_rooms_reach_no_tensorflow_at_import():
    files = modules()
    graph = {m: [t for t, top in imports(p) if top] for m, p in files.items()}

    def heavy_reached(start):
        """(module, heavy import) pairs met following module-level imports from ``start`` through the package."""
        seen, todo, heavy = {start}, [start], []
        while todo:
            module = todo.pop()
            for target in graph[module]:
                name = target if target in files else target.rsplit(".", 1)[0]
                if target.split(".")[0] in ("tensorflow", "keras"):
                    heavy.append((module, target))
                elif name in files and name not in seen:
                    seen.add(name)
                    todo.append(name)
        return heavy

    for module in files:
        if module.removeprefix("affect_zoo.") in TENSORFLOW_FREE:
            assert not heavy_reached(module), f"{module} imports TensorFlow at import time: {heavy_reached(module)}"


def _heavy_modules_after(code):
    script = f"import sys, json; {code}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stdout.splitlines()[-1])) & set(HEAVY)


def test_import_affect_zoo_and_the_registry_load_nothing_heavy():
    assert _heavy_modules_after("import affect_zoo") == set()
    assert _heavy_modules_after("import affect_zoo; affect_zoo.model_card(affect_zoo.list_models()[0])") == set()


@pytest.mark.slow
def test_load_and_predict_bring_tensorflow_but_no_datasets_or_serving():
    """``affect_zoo.load``/``predict`` import TensorFlow (and Keras imports pandas itself), never TFDS or TF
    Serving."""
    heavy = _heavy_modules_after("import affect_zoo; affect_zoo.load; affect_zoo.predict")
    assert {"tensorflow", "keras"} <= heavy
    assert not heavy & {"tensorflow_datasets", "tensorflow_serving"}
