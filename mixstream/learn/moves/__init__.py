"""Birth, merge and delete moves for memoized VB: they change K while the fit runs.

Each move is accepted only when the whole-data ELBO, computed from the memoized statistics,
rises (by more than ``base.REL_GAIN`` of its size); the per-batch cache is then edited so that
every batch's entry is the statistics of the responsibilities the accepted state implies, and
the next lap's subtract-and-add stays exact. The schedule inside one lap (``learn/movb.py``):

1. start (needs a complete memo): births are proposed on the lap's first batch and inserted;
   merge pairs to track and a delete proposal are planned;
2. every batch is visited; each visit also records the tracked pair entropies, the births'
   group entropies and the delete proposal's restricted statistics;
3. end: the births are judged against the model without them (and, in "lap" mode, against the
   lap's starting state), then the tracked merges, then the delete (kept consistent with the
   merges accepted before it), then a reordering of components by size if it raises the ELBO
   (stick-breaking prior).

Each move is a ``base.Move`` (its name, the algorithms that allow it, its defaults and its lap
hooks: ``check``, ``propose``, ``judge``, ``unsettled``); ``MOVES`` is their registry, keyed by
the words of ``mixstream.vocabulary.MOVES``. ``MemoState`` lives below the moves and movb, in
``mixstream.learn.memo``, so no move imports movb.

Options (``move_options={"birth": {...}, "merge": {...}, "delete": {...}}``) default to
``DEFAULTS``; see each module for its design.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mixstream.learn.moves import birth, delete, merge
from mixstream.learn.moves.base import LapPlan, Move
from mixstream.vocabulary import DEFAULT_MOVES, default_moves  # the moves=None rule

#: the moves by name (``mixstream.vocabulary.MOVES``), each a ``Move``, in the order a lap runs
#: them: births are proposed first (delete proposals exclude their components) and the delete
#: is judged last (after the merges it must stay consistent with)
MOVES: dict[str, Move] = {m.name: m for m in (birth.MOVE, merge.MOVE, delete.MOVE)}

#: default options of each move
DEFAULTS: dict[str, dict[str, Any]] = {name: dict(m.defaults) for name, m in MOVES.items()}


def allowed_moves(algorithm: str | None) -> tuple[str, ...]:
    """The moves ``algorithm`` may run (each move's ``algorithms``), in the registry's order."""
    return tuple(name for name, m in MOVES.items() if algorithm in m.algorithms)


def resolve_moves(
    moves: Sequence[str] | str | None, options: Mapping[str, Mapping[str, Any]] | None
) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """Validate move names and merge user options over the defaults.

    Returns
    -------
    moves : tuple of names, in the canonical order (birth, merge, delete)
    options : dict move name -> full option dict (every move present)
    """
    if moves is None:
        moves = ()
    if isinstance(moves, str):
        moves = (moves,)
    unknown = [m for m in moves if m not in MOVES]
    if unknown:
        raise ValueError(f"unknown move(s) {unknown}; choose from {tuple(MOVES)}")
    out = {name: dict(defaults) for name, defaults in DEFAULTS.items()}
    for name, given in (options or {}).items():
        if name not in MOVES:
            raise ValueError(f"move_options has unknown move {name!r}; choose from {tuple(MOVES)}")
        bad = set(given) - set(DEFAULTS[name])
        if bad:
            raise ValueError(
                f"unknown {name} option(s) {sorted(bad)}; valid: {sorted(DEFAULTS[name])}"
            )
        out[name].update(given)
    return tuple(m for m in MOVES if m in moves), out


__all__ = [
    "DEFAULTS",
    "DEFAULT_MOVES",
    "MOVES",
    "LapPlan",
    "Move",
    "allowed_moves",
    "birth",
    "default_moves",
    "delete",
    "merge",
    "resolve_moves",
]
