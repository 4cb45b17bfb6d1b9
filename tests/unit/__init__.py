"""Unit tests: pure functions and single classes, in memory, fast."""
