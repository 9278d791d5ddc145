"""The PC side of hone; :mod:`hone.host.cli` is the ``hone`` command, which drives every other layer."""
