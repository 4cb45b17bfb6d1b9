"""mixstream: finite and Dirichlet-process mixture models over data bigger than memory.

The estimator (``MixtureModel``) is what most people use; ``Model`` with its four verbs
(local_step, summarize, global_step, elbo) and ``SuffStats`` are for those who go lower.
Names are imported on first use, so ``import mixstream`` stays light for Dask workers.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "FitOptions": "mixstream.options",
    "MixtureModel": "mixstream.estimator",
    "Model": "mixstream.model",
    "SuffStats": "mixstream.suffstats",
    "select": "mixstream.app.selection",
}

__all__ = ["FitOptions", "MixtureModel", "Model", "SuffStats", "__version__", "select"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mixstream' has no attribute {name!r}")
