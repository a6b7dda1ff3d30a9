"""The package's parts depend on each other one way (config -> data -> models/state -> steps ->
metrics, features -> evaluation -> families -> loop -> commands): no import cycles between them,
read from the source (every `import` statement, also those inside functions), and config.py
imports no model, data or evaluation code."""

import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "genimg_jax")


def _part(module: str) -> str:
    """genimg_jax.evaluate.scoring -> evaluate; genimg_jax.trainer -> trainer."""
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports() -> dict[str, set[str]]:
    """{importing module: genimg_jax modules it imports}."""
    graph = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")]
            module = rel.replace(os.sep, ".").removesuffix(".__init__")
            found = set()
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    if node.module.startswith("genimg_jax"):
                        found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
                elif isinstance(node, ast.Import):
                    found |= {a.name for a in node.names if a.name.startswith("genimg_jax")}
            graph[module] = found
    return graph


def test_no_import_cycles_between_the_packages_parts():
    graph = _imports()
    modules = set(graph)
    edges: dict[str, set[str]] = {}
    for module, imported in graph.items():
        for target in imported:
            while target not in modules and "." in target:  # `from pkg import name`: the pkg
                target = target.rsplit(".", 1)[0]
            a, b = _part(module), _part(target)
            if target in modules and a != b and a != "__init__":
                edges.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            n == goal or (n not in seen and reaches(n, goal, seen | {n}))
            for n in edges.get(start, ())
        )

    cycles = sorted(
        f"{a} -> {b} -> ... -> {a}" for a in edges for b in edges[a] if reaches(b, a, {b})
    )
    assert not cycles, cycles


def test_config_imports_no_model_data_or_evaluation_code():
    imported = {_part(m) for m in _imports()["genimg_jax.config"]}
    forbidden = {"data", "evaluate", "features", "metrics", "families", "steps", "state", "trainer"}
    assert not imported & forbidden, imported
