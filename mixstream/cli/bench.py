"""``mixstream bench``: list the benchmarks shipped with mixstream (mixstream.benchmarks), or
run one in a child Python with small default arguments.

The registry is package data of the installed package, so the command works from a wheel.
A source checkout's bench/ directory may hold further scripts not (yet) packaged (bench/*.py
other than the stubs left where packaged benchmarks used to be); they are listed and run too,
marked "checkout only".
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from mixstream.cli.parser import UsageError
from mixstream.cli.progress import say


def _package_root() -> Path:
    """The directory holding the mixstream package this process imported."""
    import mixstream

    return Path(mixstream.__file__).resolve().parent.parent


def find_benchmarks() -> dict[str, tuple[list[str], tuple[str, ...], Path]]:
    """name -> (the command after ``python``, default arguments, source file)."""
    from mixstream.benchmarks import BENCHMARKS

    found: dict[str, tuple[list[str], tuple[str, ...], Path]] = {}
    for name, bench in BENCHMARKS.items():
        module = f"mixstream.benchmarks.{bench.module}"
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            found[name] = (["-m", module], bench.defaults, Path(spec.origin))
    packaged = {b.module for b in BENCHMARKS.values()}
    checkout = _package_root() / "bench"
    if checkout.is_dir() and (checkout.parent / "pyproject.toml").is_file():
        for script in sorted(checkout.glob("*.py")):
            if not script.name.startswith("_") and script.stem not in packaged:
                found[script.stem] = ([str(script)], (), script)
    return found


def _first_doc_line(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        doc = ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def run_bench(name: str | None, args: list[str]) -> int:
    """List the benchmarks (``name`` None) or run one; the exit status."""
    benches = find_benchmarks()
    from mixstream.benchmarks import BENCHMARKS

    if name is None:
        print("benchmarks (mixstream bench NAME [ARGS...]; ARGS override the small defaults):")
        for key, (cmd, defaults, path) in benches.items():
            where = path.name if cmd[0] == "-m" else f"bench/{path.name}, checkout only"
            print(f"  {key:<14} {where}: {_first_doc_line(path)}")
            if defaults:
                print(f"  {'':<14} defaults: {' '.join(defaults)}")
        return 0
    by_module = {BENCHMARKS[k].module: v for k, v in benches.items() if k in BENCHMARKS}
    benches = {**by_module, **benches}  # `core` or `core_vs_sklearn`
    if name not in benches:
        raise UsageError(
            f"unknown benchmark {name!r}; choose from {', '.join(sorted(benches))} "
            "(see 'mixstream bench --help')"
        )
    cmd, defaults, _ = benches[name]
    env = dict(os.environ)
    root = _package_root()
    if (root / "pyproject.toml").is_file():  # a source checkout: the child imports it too
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    full = [sys.executable, *cmd, *defaults, *args]
    say("running", " ".join(full[1:]))
    return subprocess.call(full, env=env)
