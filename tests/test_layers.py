"""The package's layers (docs/design.rst, "Package map"): no module imports a higher layer.

Every import counts, at the top of a module or inside a function, ``TYPE_CHECKING`` ones too: an
import inside a function is still a dependency, only a later one.  A module's layer is its
package under ``ensemble/`` (or the module itself at the top level)."""
from __future__ import annotations

import ast
from pathlib import Path

import ensemble

PACKAGE = Path(ensemble.__file__).parent

#: Lowest first.  Packages on one line are one layer: they may import one another.
LAYERS = [
    ["errors", "status", "lazy"],
    ["spec"],
    ["store", "params"],
    ["prep"],
    ["setup", "results"],
    ["launchers", "executors", "providers", "flux"],
    ["engine"],
    ["alloc"],
    ["manager"],
    ["runtime", "cli", "watch", "__main__"],
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
#: The top level: the facade and a handful of basics.
TOP_LEVEL_MODULES = {"__init__", "__main__", "errors", "status", "lazy", "manager", "runtime"}


def _layer(module: str) -> str | None:
    """``ensemble.alloc.chain`` -> ``alloc``; ``ensemble`` itself (the public names) -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "ensemble" and len(parts) > 1 else None


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every ``ensemble`` import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("ensemble.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("ensemble"):
            if node.module == "ensemble":  # from ensemble import runtime: a module, or a public name of the facade
                found += [(node.lineno, f"ensemble.{alias.name}") for alias in node.names
                          if (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file()]
                found += [(node.lineno, "ensemble.manager") for alias in node.names
                          if not ((PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file())]
            else:
                found.append((node.lineno, node.module))
    return found


def _violations() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        source = _layer(name)
        if source is None:  # ensemble/__init__.py re-exports the public API from every layer
            continue
        for line, target in _imports(path):
            layer = _layer(target)
            if layer is not None and RANK[layer] > RANK[source]:
                out.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name} ({source}) imports {target} ({layer})")
    return out


def test_every_package_has_a_layer():
    names = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert names - {"__init__"} == set(RANK)


def test_the_top_level_holds_the_facade_and_a_few_basics():
    assert {p.stem for p in PACKAGE.glob("*.py")} == TOP_LEVEL_MODULES


def test_no_module_imports_a_higher_layer():
    assert _violations() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The rule itself: a store module that imported the engine would be reported."""
    fake = tmp_path / "ensemble"
    (fake / "store").mkdir(parents=True)
    (fake / "store" / "bad.py").write_text("def f():\n    from ensemble.engine import Engine\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert _violations() == ["ensemble/store/bad.py:2: ensemble.store.bad (store) imports ensemble.engine (engine)"]


def test_nothing_below_the_facade_imports_it():
    below = [v for v in _violations() if "ensemble.manager" in v]
    users = [_module_name(p) for p in PACKAGE.rglob("*.py")
             if any(t == "ensemble.manager" for _, t in _imports(p)) and _layer(_module_name(p))]
    assert below == [] and all(RANK[_layer(u)] > RANK["manager"] for u in users), users
