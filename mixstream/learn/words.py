"""The option words ``mixstream.learn`` dispatches on, taken from ``mixstream.vocabulary``.

The words are defined there and only there; this module names each one for the registries of
``learn/algorithms.py`` and ``learn/moves/`` (unpacked in the vocabulary's order:
``tests/unit/test_layers.py`` checks what each registry entry does, so a reordering there that is
not mirrored here fails a test).
"""

from __future__ import annotations

from mixstream import vocabulary

EM, VB, KMEANS, CEM, SOVB, MOVB = vocabulary.ALGORITHMS
BIRTH, MERGE, DELETE = vocabulary.MOVES

__all__ = ["BIRTH", "CEM", "DELETE", "EM", "KMEANS", "MERGE", "MOVB", "SOVB", "VB"]
