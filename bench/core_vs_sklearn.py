"""Moved into the package: mixstream/benchmarks/core_vs_sklearn.py, shipped in the wheel so that
`mixstream bench` finds it wherever mixstream is installed. This stub keeps the old command
working: `python bench/core_vs_sklearn.py ARGS` runs the module
`python -m mixstream.benchmarks.core_vs_sklearn ARGS`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("mixstream.benchmarks.core_vs_sklearn", run_name="__main__", alter_sys=True)
