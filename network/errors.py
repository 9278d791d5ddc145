"""The errors a hone user can fix, and their one base class.

Library functions raise a typed error: :class:`~hone.network.netfile.NetworkFileError`,
:class:`~hone.rtl.plan.PlanError`, :class:`~hone.sim.runner.SimulationError`,
:class:`~hone.host.board.LinkError`, :class:`~hone.boards.build.BuildError`, and so on. Each derives from
:class:`HoneError`, so the command line's one error boundary (:func:`hone.cli.main.main`) prints it as
one ``hone: error:`` line with exit status 1, and a Python caller can catch any of them at once.
:class:`ParameterError` is the one exception: a value outside the range a network, data set or board
allows; the command line prints it as argparse does (``argument --images: ...``, exit status 2).
"""

__all__ = ["HoneError", "ParameterError"]


class HoneError(Exception):
    """Base of every error a user can fix: bad input, or an external part (a tool, a port, a board)
    that failed within its stated time. Its message is one line that names the file, field or
    argument, the value and what was expected."""


class ParameterError(HoneError, ValueError):
    """A parameter outside the range its network, data set or board allows.

    Args:
        parameter: The Python parameter's name (``"images"``); the command line names its option
            (``--images``).
        message: What was expected and what was given (``"expected 1..1797, got 0"``).
    """

    def __init__(self, parameter, message):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message
