"""The PC side of hone; :mod:`hone.cli.main` is the ``hone`` command, which drives every other layer."""
