"""Import layering of `alphazero_concepts/`: no circle between modules, and no import from a lower layer upward.

The allowed direction is stated once, in `LAYERS` (lowest first). A unit (a package, or a top-level module) may
import from its own unit and from the units of lower layers; units of the same layer do not import each other.
Every import counts, at module level or inside a function (a lazy import is still a dependency), except those
under `if TYPE_CHECKING:`. The same table is drawn in docs/DESIGN.md ("Layers").

Two placements need a word:
- `<package>/commands.py` (the `azc` subcommands a package registers) and `study/cli.py` belong to the `cli`
  layer: they are the command line's slices, kept beside the code they drive.
- `arena` sits below `training`: the arena only plays and rates networks; training uses it for its gate.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "alphazero_concepts"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("core", "engines", "plotting", "__init__"),  # plumbing: imports nothing else from the package
    ("chess",),  # encodings, formats, position readers
    ("nn",),  # networks, checkpoints, loading
    ("search",),  # MCTS, roots, rollouts
    ("commandline",),  # shared helpers of the command line (model loading, input checks)
    ("concepts",),  # activations, samples, mining, the concept set
    ("arena",),  # matches and Elo
    ("training",),  # supervised, distillation, self-play (its gate plays arena matches)
    ("filters",),  # novelty, teachability, funnel
    ("puzzles",),  # candidates, checks, exports
    ("probing", "play"),  # probes and steering; the UCI engine and annotation
    ("report",),  # the HTML report over a run directory's artifacts
    ("stages",),  # one module per pipeline stage, with its driver (the one implementation of the stage)
    ("distributed",),  # executors (local, Ray) that run the stages' drivers in shards; self-play actors
    ("pipeline",),  # the runner over the stages
    ("bench", "study"),  # benchmarks; the study app (imports only core)
    ("cli",),  # `azc`, and every package's commands.py
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """The layering unit of a dotted module name inside the package (see the module docstring)."""
    parts = module.split(".")[1:]
    if not parts:
        return "__init__"
    if parts[-1] == "commands" or parts[-2:] == ["study", "cli"]:
        return "cli"
    return parts[0]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports (`from pkg import module` resolved to the module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
            names = names or [node.module]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] == "alphazero_concepts" and n in known)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(path, known) - {name} for name, path in mods.items()}


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(m) for m in modules()}
    assert units <= set(RANK), f"units without a layer in LAYERS: {sorted(units - set(RANK))}"


def test_no_import_goes_up_or_sideways() -> None:
    bad = []
    for module, targets in sorted(graph().items()):
        src = unit_of(module)
        for target in sorted(targets):
            dst = unit_of(target)
            if dst != src and RANK[dst] >= RANK[src]:
                bad.append(f"{module} ({src}, layer {RANK[src]}) imports {target} ({dst}, layer {RANK[dst]})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_import_circle() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize(("module", "unit"), [
    ("alphazero_concepts.filters.commands", "cli"), ("alphazero_concepts.study.cli", "cli"),
    ("alphazero_concepts.study.app", "study"), ("alphazero_concepts.core.files", "core"),
    ("alphazero_concepts", "__init__"), ("alphazero_concepts.pipeline", "pipeline"),
])
def test_unit_of(module: str, unit: str) -> None:
    assert unit_of(module) == unit


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The import parser finds lazy imports and `from package import module` (what the layering rests on)."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from alphazero_concepts.filters import funnel\n"
                   "    import alphazero_concepts.pipeline\n")
    known = {"alphazero_concepts.filters.funnel", "alphazero_concepts.pipeline", "alphazero_concepts.filters"}
    assert imports(src, known) == {"alphazero_concepts.filters.funnel", "alphazero_concepts.pipeline"}
