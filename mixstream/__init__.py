"""mixstream: finite and Dirichlet-process mixture models over data bigger than memory."""

__version__ = "0.1.0"
