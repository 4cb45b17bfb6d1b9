"""Allocation models: the prior over mixture weights (finite Dirichlet or DP stick-breaking)."""

from mixstream.alloc.base import AllocModel
from mixstream.alloc.dp import DPAlloc
from mixstream.alloc.finite import FiniteAlloc

ALLOCATIONS = {"finite": FiniteAlloc, "dp": DPAlloc}

__all__ = ["ALLOCATIONS", "AllocModel", "DPAlloc", "FiniteAlloc"]
