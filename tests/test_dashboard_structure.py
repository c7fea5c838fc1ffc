"""The dashboard's shape: a tab module is imported by app.py only (never by another tab or by bench), charts and the
run planner work without Gradio, and every tab's build() returns the same TabParts."""

import ast
import importlib

from conftest import ROOT

TABS = sorted(p.stem for p in (ROOT / "ui").glob("*_tab.py"))


def imported_modules(path, when_imported: bool = False) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved inside ui/); when_imported: only
    the imports that run when the module is imported, not those inside its functions."""
    names, todo = set(), [ast.parse(path.read_text(encoding="utf-8"))]
    while todo:
        node = todo.pop()
        if when_imported and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        todo.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ("ui." + (node.module or "") if node.level else node.module or "").rstrip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from . import chat_tab`
    return names


def module_path(name: str):
    parts = name.split(".")
    path = ROOT.joinpath(*parts)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_no_tab_is_imported_by_another_tab_or_by_bench():
    assert len(TABS) == 6, TABS
    tab_modules = {f"ui.{tab}" for tab in TABS}
    importers = [ROOT / "ui" / f"{tab}.py" for tab in TABS] + sorted((ROOT / "bench").glob("*.py"))
    for path in importers:
        wrong = imported_modules(path) & (tab_modules - {f"ui.{path.stem}"})
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_charts_planner_and_bench_estimate_need_no_gradio():
    """Following their imports inside ui/ and bench/ (and ui/__init__.py, which importing any ui module runs), no
    module on the way imports gradio."""
    seen, todo = set(), ["ui.charts", "ui.planner", "ui.tabs", "bench.estimate"]
    while todo:
        name = todo.pop()
        path = module_path(name)
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        imports = imported_modules(path, when_imported=True)
        assert not {n for n in imports if n.split(".")[0] == "gradio"}, f"{name} imports gradio"
        todo += [n for n in imports if n.split(".")[0] in ("ui", "bench")]
        todo += [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]  # packages' __init__
    assert {"ui", "ui.charts", "ui.planner", "ui.style", "ui.limits", "ui.training_run"} <= seen


def test_every_tab_build_returns_tab_parts():
    from ui.tabs import TabParts

    for tab in TABS:
        build = importlib.import_module(f"ui.{tab}").build
        assert build.__annotations__.get("return") is TabParts, f"ui.{tab}.build"
