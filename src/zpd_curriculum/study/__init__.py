"""Tools to reproduce the curriculum-order study (install the ``study`` extra)."""
