"""The shape of the package: its import graph (no circles, no arrows up the layers), the size
of its files, and the algorithm and move registries of ``mixstream.learn``.

The import graph is read from the source with ``ast``: every ``import`` and ``from ... import``
anywhere in a module (module level, inside functions, under ``if TYPE_CHECKING:``) is an arrow
from that module to the module it names. ``from pkg import name`` points at ``pkg.name`` when
that is a module, at the module a package imports ``name`` from on first use when the package
lists it in its ``_LAZY`` table (``mixstream/__init__.py``, ``mixstream/obs/gauss/__init__.py``),
and at ``pkg`` itself otherwise. Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and
``a.b``; those implicit arrows are not drawn (a package that re-exports its submodules would
otherwise make a circle with each of them).
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

PACKAGE = ROOT / "mixstream"

#: the layers of mixstream/, lowest first: a module may import modules of its own layer or of
#: a lower one, never of a higher one. Each entry names modules or packages (a package stands
#: for everything inside it; the longest matching name decides). flows/ (outside the package)
#: sits above "app", beside "cli".
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "mixstream",  # the package's own __init__: imports nothing (lazy names)
            "mixstream.vocabulary",
            "mixstream.atomic",
            "mixstream.parallel",
            "mixstream._numba_kernels",
            "mixstream._kernels",
            "mixstream.backend",
            "mixstream.suffstats",
        ),
    ),
    ("components", ("mixstream.alloc", "mixstream.obs")),
    ("model", ("mixstream.model",)),
    ("learn", ("mixstream.learn",)),
    ("storage", ("mixstream.data", "mixstream.io")),
    ("engine", ("mixstream.engine",)),
    (
        "front",
        (
            "mixstream.options",
            "mixstream.build",
            "mixstream.fitted",
            "mixstream.sampling",
            "mixstream.fit_run",
            "mixstream.estimator",
            "mixstream.streamed",
            "mixstream.labelled",
            "mixstream.report",
            "mixstream.plots",
            "mixstream.benchmarks",
        ),
    ),
    ("app", ("mixstream.app",)),
    ("cli", ("mixstream.cli",)),
]

#: most lines of one source file in mixstream/
MAX_LINES = 600
#: files allowed over MAX_LINES (none)
TOO_LONG_ALLOWED: set[str] = set()

#: import arrows left out of the circle check (none)
CIRCLE_EDGES_ALLOWED: set[tuple[str, str]] = set()


# ---------------------------------------------------------------------- the import graph
def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (path, is a package __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _lazy_names(tree: ast.Module) -> dict[str, str]:
    """A package's ``_LAZY = {name: module}`` table (names it imports on first use)."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in targets):
            return ast.literal_eval(node.value)
    return {}


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of mixstream it imports (anywhere in its source)."""
    modules = _modules()
    trees = {name: ast.parse(path.read_text(), str(path)) for name, (path, _) in modules.items()}
    lazy = {name: _lazy_names(trees[name]) for name, (_, is_pkg) in modules.items() if is_pkg}

    def owner(dotted: str) -> str | None:
        parts = dotted.split(".")
        while parts:
            if ".".join(parts) in modules:
                return ".".join(parts)
            parts.pop()
        return None

    graph: dict[str, set[str]] = {}
    for name, (_, is_pkg) in modules.items():
        arrows: set[str] = set()
        for node in ast.walk(trees[name]):
            if isinstance(node, ast.Import):
                arrows.update(filter(None, (owner(a.name) for a in node.names)))
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the package of this module
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != "mixstream":
                    continue
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    if full in modules:
                        arrows.add(full)
                    elif alias.name in lazy.get(source, {}):
                        arrows.add(owner(lazy[source][alias.name]))
                    elif owner(source):
                        arrows.add(owner(source))
        arrows.discard(name)
        graph[name] = arrows
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int:
    """Position in LAYERS of the longest entry naming ``module`` or a package above it."""
    best, best_len = None, -1
    for i, (_, names) in enumerate(LAYERS):
        for entry in names:
            if (module == entry or module.startswith(entry + ".")) and len(entry) > best_len:
                best, best_len = i, len(entry)
    if best is None:
        raise KeyError(f"{module} is in no layer of tests/unit/test_layers.py:LAYERS: add it there")
    return best


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    # module level, inside functions, under TYPE_CHECKING, and a lazy name of a package
    assert "mixstream.learn.executor" in graph["mixstream.learn.init"]
    assert "mixstream.learn.algorithms" in graph["mixstream.fit_run"]  # in a method
    assert "mixstream.learn.executor" in graph["mixstream.data.sources"]  # under TYPE_CHECKING
    assert "mixstream.estimator" in graph["mixstream.app.outputs"]  # `from mixstream import`


def test_no_import_circles():
    graph = import_graph()
    for source, target in CIRCLE_EDGES_ALLOWED:
        graph[source].discard(target)
    assert circles(graph) == []


def test_no_import_points_up_the_layers():
    graph = import_graph()
    up = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, targets in sorted(graph.items())
        for t in sorted(targets)
        if layer_of(t) > layer_of(m)
    ]
    assert up == []


def test_learn_imports_no_engine_dask_or_prefect():
    """learn/ takes an executor: it never imports what runs it."""
    for path in (PACKAGE / "learn").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            for n in names:
                assert n.split(".")[0] not in ("dask", "distributed", "prefect"), (path, n)


def test_no_source_file_is_too_long():
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert {f: n for f, n in long.items() if f not in TOO_LONG_ALLOWED} == {}


# ---------------------------------------------------------------------- the registries
def test_registries_are_keyed_by_the_vocabulary():
    from mixstream import vocabulary
    from mixstream.learn.algorithms import ALGORITHMS, Algorithm
    from mixstream.learn.moves import DEFAULTS, MOVES, Move

    assert tuple(ALGORITHMS) == vocabulary.ALGORITHMS
    assert set(MOVES) == set(vocabulary.MOVES)
    for name, algorithm in ALGORITHMS.items():
        assert isinstance(algorithm, Algorithm) and algorithm.name == name
    for name, move in MOVES.items():
        assert isinstance(move, Move) and move.name == name
        assert dict(move.defaults) == DEFAULTS[name]
        assert move.algorithms <= set(vocabulary.ALGORITHMS)


def test_what_each_algorithm_allows_and_memoizes():
    """The rules as they were written out before the registry (words spelled out here, so a
    reordered vocabulary that learn/words.py did not follow fails)."""
    from types import SimpleNamespace as Options

    from mixstream.learn.algorithms import ALGORITHMS, memoized

    allowed = {a: ALGORITHMS[a].moves for a in ALGORITHMS}
    assert allowed == {
        "em": ("merge", "delete"),
        "vb": (),
        "kmeans": (),
        "cem": ("merge", "delete"),
        "sovb": (),
        "movb": ("birth", "merge", "delete"),
    }

    def memo(algorithm: str, moves=None, batch_size=None) -> bool:
        return memoized(Options(algorithm=algorithm, moves=moves, batch_size=batch_size))

    assert memo("movb") and memo("movb", moves=())
    assert not memo("em") and memo("em", moves=("merge",)) and not memo("em", batch_size=10)
    assert not memo("cem") and memo("cem", moves=("delete",)) and memo("cem", batch_size=10)
    assert not memo("kmeans") and memo("kmeans", batch_size=10)
    assert not memo("vb", batch_size=10) and not memo("sovb", batch_size=10)
    assert not memo("no such algorithm")
    assert memo("em", moves="merge")  # one name as a string is one move


def test_carried_states_go_to_and_from_checkpoint_arrays():
    from types import SimpleNamespace as Options

    from mixstream.learn.algorithms import ALGORITHMS, state_from_arrays, state_to_arrays
    from mixstream.learn.memo import MemoState
    from mixstream.learn.sovb import SoVBState

    movb = Options(algorithm="movb", moves=None, batch_size=None)
    sovb = Options(algorithm="sovb", moves=None, batch_size=None, kappa=0.7, delay=2.0)
    memo = state_from_arrays(movb, state_to_arrays(MemoState(memory={"delete": {3: 1}})))
    assert isinstance(memo, MemoState) and memo.memory == {"delete": {3: 1}}
    step = SoVBState(kappa=0.7, delay=2.0)
    arrays = ALGORITHMS["sovb"].state_to_arrays(step)
    assert isinstance(ALGORITHMS["sovb"].state_from_arrays(sovb, arrays), SoVBState)
    assert state_to_arrays(None) == {} and state_from_arrays(movb, {}) is None
    with pytest.raises(ValueError, match="'sovb' state, which algorithm 'movb'"):
        state_from_arrays(movb, arrays)
    with pytest.raises(ValueError, match="'memo' state, which algorithm 'vb'"):
        state_from_arrays(Options(algorithm="vb", moves=None), state_to_arrays(MemoState()))


def test_allowed_moves_are_what_the_estimator_accepts():
    """Each algorithm's moves (from the registry) are exactly those the estimator's
    validation lets it run; every other move is refused before any lap."""
    from mixstream import MixtureModel
    from mixstream.learn.algorithms import ALGORITHMS
    from mixstream.learn.moves import MOVES

    X = np.random.default_rng(0).normal(size=(60, 2))
    for algorithm, registered in ALGORITHMS.items():
        for move in MOVES:
            est = MixtureModel(2, algorithm=algorithm, moves=(move,), max_laps=1, random_state=0)
            if move in registered.moves:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.fit(X)
            else:
                with pytest.raises(ValueError, match=move if move == "birth" else "moves="):
                    est.fit(X)
