"""The ``hone`` command: its entry point (:func:`main`), its one error boundary and its parser; each
subcommand lives in its own module of :mod:`hone.cli` (``hone flow`` in :mod:`hone.cli.flow`).

Subcommands import their heavy dependencies (TensorFlow, Keras, Amaranth, cocotb) only when they run,
so ``hone --help`` is instant. User errors print one ``hone: error: ...`` line and exit with status 2
(usage) or 1 (run failed), never a traceback. With ``--json`` the last line on stdout is one JSON
object with the figures the command reports.
"""

import argparse
import os
import pathlib
import signal
import sys
import warnings

from hone.cli import rtl as rtl_cli
from hone.cli import sim as sim_cli
from hone.cli import train as training_cli
from hone.cli.arguments import UsageError, UserError
from hone.network.errors import HoneError, ParameterError

__all__ = ["main", "build_parser"]


def build_parser():
    parser = _Parser(
        prog="hone", description="Whetstone-sharpened binary spiking networks, from Keras to an FPGA.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from hone.cli import export as export_cli, info as info_cli, sweep as sweep_cli
    for module in (training_cli, sweep_cli, export_cli, info_cli):
        module.add_commands(commands)
    rtl_cli.add_commands(commands)
    sim_cli.add_commands(commands)
    from hone.cli import build as boards_cli

    from hone.cli import infer as infer_cli
    boards_cli.add_commands(commands)
    infer_cli.add_commands(commands)
    from hone.cli import nir as nir_cli
    nir_cli.add_commands(commands)
    from hone.cli import flow as flow_cli
    flow_cli.add_commands(commands)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other hone error (status 2 all the same)."""

    def error(self, message):
        self.exit(2, f"hone: error: {message} (see: {self.prog} --help)\n")


def _internal_error(error):
    """Keep the traceback of an unexpected exception in a log file; the one line to print."""
    import tempfile
    import time
    import traceback

    log = pathlib.Path(tempfile.gettempdir()) / f"hone-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        log.write_text(f"hone {' '.join(sys.argv[1:])}\n\n" + "".join(traceback.format_exception(error)))
        where = f"the traceback is in {log}"
    except OSError as cause:
        where = f"its traceback could not be written to {log} ({cause})"
    reason = (str(error).strip().splitlines() or [""])[0][:200]
    return (f"hone: internal error: {type(error).__name__}{': ' + reason if reason else ''} "
            f"({where}; please report it)")


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """hone's own warnings are one ``hone: warning: ...`` line; others keep Python's format."""
    if category.__module__.startswith("hone."):
        print(f"hone: warning: {message}", file=sys.stderr, flush=True)
    else:
        _default(message, category, filename, lineno, file, line)


def _terminate(signum, frame):
    raise KeyboardInterrupt     # unwinds like Ctrl-C, so that running tools (nextpnr) are stopped too


def main(argv=None):
    """The ``hone`` command: 0 on success, 1 when a run fails, 2 for a usage error, 130 on Ctrl-C or
    SIGTERM (tools it started, such as nextpnr, are stopped with it).

    Every error is one ``hone: error: ...`` line on stderr; a file that cannot be read or written
    (permissions, a missing folder, a full disk) is one too, naming it. An unexpected exception (a bug in
    hone, not a user error) is one ``hone: internal error: ...`` line naming a log file with its traceback.
    """
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    terminate = signal.signal(signal.SIGTERM, _terminate)
    try:
        args.handler(args)
    except UsageError as error:
        print(f"hone: error: {error}", file=sys.stderr)
        return 2
    except ParameterError as error:   # the library names its parameter; the user knows it as an option
        print(f"hone: error: argument --{error.parameter.replace('_', '-')}: {error.message}", file=sys.stderr)
        return 2
    except (UserError, HoneError) as error:
        print(f"hone: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hone: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:      # stdout piped into `head`: not an error of ours
        sys.stderr.close()
        return 1
    except OSError as error:     # a file or folder the user named cannot be read or written
        where = f"{error.filename}: " if error.filename else ""
        reason = {FileExistsError: "exists and is not a folder",
                  NotADirectoryError: "a part of this path is a file, not a folder"}.get(type(error))
        print(f"hone: error: {where}{reason or error.strerror or error}", file=sys.stderr)
        return 1
    except Exception as error:
        print(_internal_error(error), file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, terminate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
