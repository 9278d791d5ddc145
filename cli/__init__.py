"""The ``hone`` command line: the entry point and its one error boundary (:mod:`hone.cli.main`),
argument types (:mod:`hone.cli.arguments`), one module per subcommand, the flow
(:mod:`hone.cli.flow`) and the rendering of reports.

Only this package imports argparse or knows :class:`~hone.cli.arguments.UserError`; the library
raises typed errors (:class:`hone.network.errors.HoneError` and its subclasses), which the boundary
prints as one line. Nothing imports this package but ``python -m hone`` and the console script.
"""
