"""Moved into the package: mixstream/benchmarks/dp_discovery.py, shipped in the wheel so that
`mixstream bench` finds it wherever mixstream is installed. This stub keeps the old command
working: `python bench/dp_discovery.py ARGS` runs the module
`python -m mixstream.benchmarks.dp_discovery ARGS`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("mixstream.benchmarks.dp_discovery", run_name="__main__", alter_sys=True)
