"""The link client: :class:`~hone.host.board.Board` (the host half of the serial protocol, for a real
or a simulated board) and :func:`~hone.host.infer.run_infer` (test images through a board, checked
against the integer model). No argparse here; :mod:`hone.cli` is the ``hone`` command.
"""
