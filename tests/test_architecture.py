"""The package's layers (docs/decisions.md, "Layers"): nothing imports upward, and every module imports on its own
in a fresh interpreter (no import circle that only some import orders hide)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import REPO

SRC = REPO / "src" / "llmkt"

#: package -> layer; a module may import its own package and packages of lower layers. Layer 2 siblings may import
#: each other (the trainer evaluates, the CTR evaluator batches); layer 3 siblings may not.
LAYERS = {"errors": 0, "data": 1, "models": 2, "training": 2, "evaluation": 2, "transfer": 3, "profiles": 3,
          "baselines": 3, "serving": 3, "config": 4, "experiments": 5, "cli": 6,
          "__main__": 7}  # llmkt/__main__.py: `python -m llmkt` runs the CLI
SIBLINGS_OK = {2}


def modules() -> list[tuple[str, object]]:
    out = []
    for f in sorted(SRC.rglob("*.py")):
        parts = f.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, f))
    return out


def imports_of(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):  # module level and inside functions alike
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmkt"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("llmkt"))
    return found


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_package_has_a_layer():
    packages = {_package(m) for m, _ in modules()} - {None}
    assert packages <= set(LAYERS), packages - set(LAYERS)


def test_nothing_imports_upward():
    bad = []
    for mod, path in modules():
        own = _package(mod)
        if own is None:  # llmkt/__init__.py: the public API on top of everything
            continue
        for dep in imports_of(path):
            other = _package(dep)
            if other is None or other == own:
                continue
            if LAYERS[other] > LAYERS[own] or (LAYERS[other] == LAYERS[own] and LAYERS[own] not in SIBLINGS_OK):
                bad.append(f"{mod} imports {dep}")
    assert bad == []


def test_profiles_transfer_baselines_take_objects_not_configs_or_jobs():
    for mod, path in modules():
        if _package(mod) in ("profiles", "transfer", "baselines"):
            deps = imports_of(path)
            assert not {d for d in deps if d.startswith(("llmkt.experiments", "llmkt.config", "llmkt.cli"))}, mod


def test_every_module_imports_alone_in_a_fresh_process():
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}

    def one(name: str) -> tuple[str, int, str]:
        p = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, env=env,
                           timeout=120)
        return name, p.returncode, p.stderr[-500:]

    names = [m for m, _ in modules() if not m.endswith("__main__")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        failed = [r for r in pool.map(one, names) if r[1] != 0]
    assert failed == []


@pytest.mark.parametrize("text, pattern", [("import llmkt.cli", "cli"), ("from llmkt.experiments import x", "experiments")])
def test_the_import_scanner_sees_imports(tmp_path, text, pattern):
    f = tmp_path / "m.py"
    f.write_text(f"def f():\n    {text}\n")
    assert any(pattern in d for d in imports_of(f))
