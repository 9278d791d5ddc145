"""Argument types of the ``hone`` command line, and the two errors only it knows.

Out-of-range values are refused while parsing, before any work, with argparse's exit status 2 and a
message naming the option, the value and what was expected.
"""

import argparse
import math

from hone.network.datasets import DatasetError, check_dataset_name

__all__ = ["UserError", "UsageError", "integer_in", "number_in", "dataset_argument"]


class UserError(Exception):
    """An error the user can fix; printed as one ``hone: error:`` line, exit status 1."""


class UsageError(UserError):
    """An argument outside the range its network, data or board allows; exit status 2, as argparse's."""


def integer_in(low, high=None):
    """``type=`` of an integer option in ``low..high`` (inclusive; ``high=None``: no upper bound).

    Out-of-range values are refused while parsing, before any work, with argparse's exit status 2.
    """
    wanted = f"an integer in {low}..{high}" if high is not None else f"an integer >= {low}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if value < low or high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    parse.__name__ = "integer"   # argparse names the type in its own messages
    return parse


def number_in(low, high=None, *, low_open=False, high_open=True, why=""):
    """``type=`` of a real option between ``low`` and ``high`` (``None``: no upper bound), each end
    excluded when its ``*_open`` is true (default: ``[low, high)``). NaN and infinities are refused;
    ``why`` ends the message."""
    if high is None:
        wanted = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        wanted = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        below = value <= low if low_open else value < low
        above = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}{why and f' ({why})'}")
        return value

    parse.__name__ = "number"
    return parse


def dataset_argument(text):
    """``type=`` of a ``--dataset`` option: a name from :data:`~hone.network.datasets.DATASETS` or a path
    ending in ``.npz``, returned as given (the file is read, and checked, when it is loaded)."""
    try:
        return check_dataset_name(text)
    except DatasetError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
