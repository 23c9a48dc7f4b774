"""Argument types for argparse: what a number on the command line may be.

argparse reports a value these refuse as one line (`argument --port: must be 1..65535, not
99999`) and exit code 2, before any work starts. `float("inf")` and `float("nan")` parse, but no
option of ours means anything with them (a temperature of inf samples from nan probabilities).
"""

from __future__ import annotations

import argparse
import math

MAX_SEED = 2**32 - 1  # what numpy and torch accept as a seed
MAX_PORT = 65535


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, not {text!r}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_SEED}, not {text}")
    return value


def port(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_PORT}, not {text}")
    return value
