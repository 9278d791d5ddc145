"""The PC side of hone; :mod:`host.cli` is the ``hone`` command, which drives every other layer."""
