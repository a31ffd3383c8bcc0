"""The import rules of the README's code map, checked on the source with `ast` (nothing is imported).

Every import counts, also those inside functions.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "stno"

FRAMEWORKS = {"pytorch_lightning", "lightning", "hydra", "omegaconf"}

# The layers of stno/, lowest first: a package may import its own layer and those below it.
LAYERS = [
    ("stno.errors",),
    ("stno.ops",),
    ("stno.nn",),
    ("stno.io",),
    ("stno.data",),
    ("stno.inference",),
    ("stno.evaluation",),
    ("stno.lit",),
    ("stno.cli",),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


@cache
def imports(module: str) -> frozenset[str]:
    """Absolute names of everything `module` imports (`from a import b` gives `a`, and `a.b`
    when that is a module of stno)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module
            found.add(base)
            found.update(
                f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES
            )
    return frozenset(found)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def modules_under(package: str) -> list[str]:
    return [name for name in MODULES if within(name, package)]


def test_the_parser_sees_relative_and_lazy_imports():
    assert "stno.ops.warping" in imports(
        "stno.nn.propagation"
    )  # `from stno.ops.warping import ...`
    assert "stno.nn.attention" in imports("stno.nn")  # the package's own __init__
    assert "omegaconf" in imports("stno.io.configs")  # inside a function


@pytest.mark.parametrize("module", modules_under("stno.nn"))
def test_nn_is_plain_torch(module):
    """The network package: torch, einops and the standard library; nothing else of stno."""
    names = imports(module)
    roots = {name.split(".")[0] for name in names}
    assert not roots & FRAMEWORKS, f"{module} imports a training framework: {roots & FRAMEWORKS}"
    third_party = roots - set(sys.stdlib_module_names) - {"__future__", "stno"}
    assert third_party <= {"torch", "einops"}, f"{module} imports {sorted(third_party)}"


def layer_of(name: str) -> int | None:
    for level, packages in enumerate(LAYERS):
        if any(within(name, package) for package in packages):
            return level
    return None


@pytest.mark.parametrize(
    "module", [name for name in MODULES if layer_of(name) is not None and name != "stno"]
)
def test_no_module_imports_a_higher_layer(module):
    """errors < ops < nn < io < data < inference < evaluation < lit < cli (README, Code map)."""
    level = layer_of(module)
    higher = sorted(
        name for name in imports(module) if within(name, "stno") and (layer_of(name) or 0) > level
    )
    assert not higher, f"{module} (layer {LAYERS[level][0]}) imports {higher}"


def test_every_module_has_a_layer():
    loose = [
        name
        for name in MODULES
        if layer_of(name) is None and name not in ("stno", "stno.assets", "stno.assets.make_sample")
    ]
    assert not loose, f"modules outside the layers of LAYERS: {loose}"


# Entry points may share `stno.cli.common` (config directory, error-to-exit-code mapping); any
# other logic one of them needs belongs in the library, where the others can call it too.
CLI_SHARED = "stno.cli.common"


@pytest.mark.parametrize("module", [n for n in modules_under("stno.cli") if n != "stno.cli"])
def test_cli_modules_do_not_import_each_other(module):
    others = {
        name
        for name in imports(module)
        if within(name, "stno.cli") and name not in (module, CLI_SHARED, "stno.cli")
    }
    assert not others, f"{module} imports {sorted(others)}"


def test_hydra_only_in_the_entry_points():
    users = {m for m in MODULES if any(within(n, "hydra") for n in imports(m))}
    assert users <= set(modules_under("stno.cli")), sorted(users - set(modules_under("stno.cli")))


def test_one_import_style_for_lightning():
    styles = {
        name.split(".")[0]
        for module in MODULES
        for name in imports(module)
        if name.split(".")[0] in ("pytorch_lightning", "lightning")
    }
    assert len(styles) <= 1, f"both `pytorch_lightning` and `lightning` are imported: {styles}"


def test_importing_the_network_loads_no_training_framework():
    """At run time too: `import stno.nn` also runs `stno/__init__.py` and what that imports."""
    code = (
        "import sys, stno.nn, stno.ops.imresize, stno.ops.metrics; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(FRAMEWORKS)!r})))"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_DIR.parent)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout
