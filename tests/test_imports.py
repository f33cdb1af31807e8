"""The snnse modules import each other in one direction: no import cycles.

Every module of the package is parsed with :mod:`ast` (no import is executed): the imports at
module level and inside functions and methods, absolute and relative. ``from x import y`` counts
as importing the submodule ``x.y`` where that is a module, else ``x``; ``import snnse`` or
``from snnse import name`` with a name defined in ``snnse/__init__.py`` is an import of ``snnse``
itself (the package's ``__init__``), which is fine from modules that ``__init__`` does not reach.
A cycle is two or more modules that reach each other. The known, not yet broken ones are listed
in ``ALLOWED`` with their reason; any other cycle fails the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "snnse"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Cycles (as sorted module lists) that remain, each with the reason it is still there; any other
# cycle fails, and an entry whose cycle is gone fails too (take it off the list).
ALLOWED: dict[tuple[str, ...], str] = {}  # none left (evaluate <-> robustness was broken by evaluation_pipeline)


def modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package (``pkg.__init__`` named ``pkg``)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(name: str, mods: dict[str, Path]) -> bool:
    return name in mods and mods[name].name == "__init__.py"


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The longest prefix of the dotted ``name`` that is a module of the package, or None."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in mods:
            return cand
        parts.pop()
    return None


def imports_of(module: str, mods: dict[str, Path]) -> set[str]:
    """The package-internal modules that ``module`` imports (anywhere in its code)."""
    tree = ast.parse(mods[module].read_text(), filename=str(mods[module]))
    package = module if _is_package(module, mods) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, mods)
                if target is not None:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in mods:  # a submodule
                    found.add(sub)
                else:  # a name defined in (or re-exported by) the module ``base``
                    target = _resolve(base, mods)
                    if target is not None:
                        found.add(target)
    found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(m, mods) for m in mods}


def cycles(g: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components with two or more modules (Tarjan), as sorted tuples."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[tuple[str, ...]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(tuple(sorted(comp)))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(out)


def _describe(comp: tuple[str, ...], g: dict[str, set[str]]) -> str:
    edges = [f"{a} -> {b}" for a in comp for b in sorted(g[a]) if b in comp]
    return f"{' <-> '.join(comp)}\n    " + "\n    ".join(edges)


def test_the_parser_sees_the_kinds_of_import():
    """Relative and absolute, module level and in functions, submodules and names of ``__init__``."""
    mods = modules()
    assert "snnse.models.base" in mods and "snnse.models" in mods and "snnse" in mods
    assert {"snnse.models.dpsnn", "snnse.models.spiking_s4", "snnse.models.base"} <= imports_of("snnse.models", mods)
    assert "snnse.models" in imports_of("snnse", mods)  # `from .models import get`: a name of the package
    assert "snnse.models.base" in imports_of("snnse.models.dpsnn", mods)
    # the fast path imports the models (also inside functions)
    assert "snnse.models.dpsnn" in imports_of("snnse.fast_dpsnn", mods)


def test_no_import_cycles():
    g = graph()
    found = cycles(g)
    unexpected = [c for c in found if c not in ALLOWED]
    assert not unexpected, "import cycles in snnse:\n" + "\n".join(_describe(c, g) for c in unexpected)


def test_allowed_cycles_are_still_there():
    """An allow-listed cycle that was broken is taken off the list (so that it cannot come back)."""
    found = set(cycles(graph()))
    assert not [c for c in ALLOWED if c not in found]


def test_models_never_import_the_fast_path():
    g = graph()
    fast = {f"{PACKAGE}.{m}" for m in ("fast_step", "fast_dpsnn", "fast_s4", "fast_cpp")}
    for m, deps in g.items():
        if m == f"{PACKAGE}.models" or m.startswith(f"{PACKAGE}.models."):
            assert not deps & fast, (m, sorted(deps & fast))


def test_the_fast_path_is_plugged_in():
    """Importing snnse installs the fast path in the models' hook: one hop without autograd takes it."""
    import torch

    import snnse
    from snnse import fast_step, fastpath

    if not fast_step.enabled():  # SNNSE_FAST_STEP=0
        return
    model = snnse.load("dpsnn-demo").eval()
    chunk = torch.zeros(1, model.hop)
    with torch.no_grad():
        plan = fastpath.hop_plan(model, chunk)
        assert plan is not None and plan is fast_step.plan_for(model)
        assert fastpath.hop_plan(model, torch.zeros(1, 2 * model.hop)) is None  # not one hop
    assert fastpath.hop_plan(model, chunk) is None  # autograd on


def test_each_family_names_its_plan_and_op_graph_in_its_model_module():
    """One place knows a family: the masker class names its plan and its op-count builder."""
    import snnse
    from snnse import fast_step
    from snnse.fast_dpsnn import DPSNNPlan
    from snnse.fast_s4 import S4Plan
    from snnse.metrics import opcount, opgraph_models
    from snnse.models.base import masker_part

    want = {"dpsnn": (DPSNNPlan, opgraph_models.dpsnn_graph), "spiking_s4": (S4Plan, opgraph_models.s4_graph)}
    for name, (plan, graph) in want.items():
        m = snnse.get(name, **({"N": 16, "B": 16, "H": 16} if name == "dpsnn" else
                               {"d_model": 16, "d_state": 4, "n_layers": 1}))
        assert masker_part(m.masker, "fast_plan") is plan and masker_part(m.masker, "op_graph") is graph
        assert isinstance(fast_step.build(m), plan)
        assert opcount.op_graph(m).layers

    class Other(type(snnse.get("dpsnn", N=16, B=16, H=16).masker)):  # a subclass names its own parts
        pass

    assert masker_part(Other.__new__(Other), "fast_plan") is None
