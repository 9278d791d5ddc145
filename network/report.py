"""The base of hone's reports: a dataclass whose fields are the figures a command prints.

Each library function that measures something (:func:`hone.training.export.export_model`,
:func:`hone.sim.runner.run_sim`, :func:`hone.boards.build.build_bitstream`, ...) returns a
:class:`Report` subclass; ``to_json()`` is what ``--json`` prints, key for key.
"""

import dataclasses
import enum
import pathlib

import numpy as np

__all__ = ["Report", "jsonable"]


def jsonable(value):
    """``value`` with every path, numpy scalar or array, enum, tuple and nested dataclass turned into
    JSON's types (``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``, ``None``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, Report):
            return value.to_json()
        return {field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclasses.dataclass
class Report:
    """A command's figures. ``to_json()`` gives them as one JSON object, fields in declaration order;
    a field whose value is ``None`` and whose name is in ``_OPTIONAL`` is left out (a figure the run
    did not measure)."""

    _OPTIONAL = frozenset()

    def to_json(self):
        """The report as a dict of JSON types (what ``--json`` prints as its last stdout line)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.name in self._OPTIONAL:
                continue
            out[field.name] = jsonable(value)
        return out
