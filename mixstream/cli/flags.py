"""Python parameter names in error messages, shown as the command line's flags.

Errors raised in the library name the Python API's parameters (``overwrite=True``,
``n_components``); the command line prints them through ``cli_text``, so that a user of the
command line reads ``--overwrite`` and ``--n-components`` instead. An exception with its own
``cli_message()`` (mixstream.app.RunExistsError, mixstream.data.ingest.AmbiguousHeaderError)
words its message for the command line itself.
"""

from __future__ import annotations

import re

#: parameter (or ``parameter=value``) -> the flag that sets it
PARAM_FLAGS: dict[str, str] = {
    "overwrite=True": "--overwrite",
    "header=True": "--header",
    "header=False": "--no-header",
    "n_components": "--n-components",
    "covariance_type": "--covariance-type",
    "batch_size": "--batch-size",
    "max_laps": "--max-laps",
    "random_state": "--seed",
    "n_workers": "--workers",
    "chunk_rows": "--chunk-rows",
    "shard_rows": "--shard-rows",
    "latent_dim": "--latent-dim",
    "na_values": "--na-values",
}
#: single-word parameters, shown as flags only in the ``name=value`` form (as words they are
#: ordinary English: "moves", "data", "out")
VALUE_FLAGS: dict[str, str] = {
    "tol": "--tol",
    "moves": "--moves",
    "algorithm": "--algorithm",
    "allocation": "--allocation",
    "likelihood": "--likelihood",
    "scheduler": "--scheduler",
    "out": "--out",
    "proba": "--proba",
    "missing": "--missing",
}

_EXACT = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(k) for k in PARAM_FLAGS if "=" in k) + r")(?![\w])"
)
_NAMES = re.compile(
    r"(?<![\w.-])("
    + "|".join(re.escape(k) for k in PARAM_FLAGS if "=" not in k)
    + r")(?:=(\S+?))?(?=[\s,;:)]|$)"
)
_VALUES = re.compile(r"(?<![\w.-])(" + "|".join(VALUE_FLAGS) + r")=(\S+?)(?=[\s,;:)]|$)")


def cli_text(text: str) -> str:
    """``text`` with the Python parameter names it mentions replaced by the flags."""
    text = _EXACT.sub(lambda m: PARAM_FLAGS[m.group(1)], text)
    text = _NAMES.sub(
        lambda m: PARAM_FLAGS[m.group(1)] + (f" {m.group(2)}" if m.group(2) else ""), text
    )
    return _VALUES.sub(lambda m: f"{VALUE_FLAGS[m.group(1)]} {m.group(2)}", text)


def cli_message(err: BaseException) -> str:
    """The message of ``err`` as the command line shows it."""
    own = getattr(err, "cli_message", None)
    text = own() if callable(own) else str(err)
    return cli_text(text)
