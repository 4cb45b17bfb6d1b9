"""Test helpers that other processes import by name (Dask workers unpickling batch functions).

``tests/`` is on ``sys.path`` here (pytest's rootdir conftest) and on ``PYTHONPATH`` for child
processes (tests/conftest.py), so ``helpers.<module>`` resolves in both.
"""
