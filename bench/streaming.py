"""Moved into the package: mixstream/benchmarks/streaming.py, shipped in the wheel so that
`mixstream bench` finds it wherever mixstream is installed. This stub keeps the old command
working: `python bench/streaming.py ARGS` runs the module
`python -m mixstream.benchmarks.streaming ARGS`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("mixstream.benchmarks.streaming", run_name="__main__", alter_sys=True)
