"""The package's listing is its architecture: subpackages by layer, each importing only from the
layers below it (config -> data -> state -> steps -> loop -> commands), read from the source
(every `import` statement, also those inside functions, and every import by string), with each
family's code inside its own folder."""

import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "genimg_jax")
# lowest first: a part may import from itself and the parts before it
LAYERS = [
    "core",
    "runtime",
    "data",
    "models",
    "metrics",
    "features",
    "families",
    "config",
    "training",
    "sweeps",
    "cli",
]
FAMILY_CLASSES = ("GANState", "FactorVAEState", "GANStep", "VAEStep")


def _modules() -> dict[str, ast.Module]:
    """{dotted module name: its syntax tree} of every module in the package."""
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")]
                with open(path) as f:
                    found[rel.replace(os.sep, ".").removesuffix(".__init__")] = ast.parse(f.read())
    return found


def _string_imports(tree: ast.Module) -> set[str]:
    """The genimg_jax modules `tree` imports by string (importlib.import_module, __import__)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            target = str(node.args[0].value)
            if name in ("import_module", "__import__") and target.startswith("genimg_jax"):
                found.add(target)
    return found


def _imports(tree: ast.Module) -> set[str]:
    """The genimg_jax modules (or names in them) `tree` imports, by statement or by string."""
    found = _string_imports(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("genimg_jax"):
                found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("genimg_jax")}
    return found


def _part(module: str) -> str:
    """genimg_jax.families.gan.step -> families; genimg_jax.config -> config."""
    return module.split(".")[1] if module.count(".") else "__init__"


def test_the_top_level_is_the_layers():
    entries = sorted(e for e in os.listdir(PACKAGE) if not e.startswith(("_", ".")))
    assert sorted(e.removesuffix(".py") for e in entries) == sorted(LAYERS)
    assert len(entries) + 1 <= 12  # and __init__.py, the Python API


def test_every_layer_imports_only_from_the_layers_below_it():
    modules = _modules()
    upward = []
    for module, tree in modules.items():
        if module == "genimg_jax":  # the lazy Python API reaches every layer by design
            continue
        for target in _imports(tree):
            while target not in modules and "." in target:  # `from pkg import name`: the pkg
                target = target.rsplit(".", 1)[0]
            a, b = _part(module), _part(target)
            if b != "__init__" and LAYERS.index(b) > LAYERS.index(a):
                upward.append(f"{module} imports {target}")
    assert not upward, upward


def test_no_module_below_the_api_imports_the_packages_parts_by_string():
    """A string import hides an edge from the layer check (the lazy API alone uses them)."""
    strings = [
        f"{module}: {target}"
        for module, tree in _modules().items()
        if module != "genimg_jax"
        for target in _string_imports(tree)
    ]
    assert not strings, strings


def test_family_classes_live_in_the_families():
    outside = [
        f"{module}: class {node.name}"
        for module, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and node.name in FAMILY_CLASSES
        and _part(module) != "families"
    ]
    assert not outside, outside
