"""Moved into the package: mixstream/benchmarks/gpu.py, shipped in the wheel so that
`mixstream bench` finds it wherever mixstream is installed. This stub keeps the old command
working: `python bench/gpu.py ARGS` runs the module
`python -m mixstream.benchmarks.gpu ARGS`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("mixstream.benchmarks.gpu", run_name="__main__", alter_sys=True)
