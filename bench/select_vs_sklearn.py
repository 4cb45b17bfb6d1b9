"""Runs the package's benchmark `python -m mixstream.benchmarks.select_vs_sklearn ARGS`
(shipped in the wheel so that `mixstream bench select` finds it)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("mixstream.benchmarks.select_vs_sklearn", run_name="__main__", alter_sys=True)
