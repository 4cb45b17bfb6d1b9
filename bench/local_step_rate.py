"""The local step + summary against the float64 / float32 GEMM rate, per phase: the module
mixstream/benchmarks/local_step_rate.py, shipped in the wheel. `python bench/local_step_rate.py
ARGS` runs `python -m mixstream.benchmarks.local_step_rate ARGS`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("mixstream.benchmarks.local_step_rate", run_name="__main__", alter_sys=True)
