"""The zpd-curriculum benchmark suite: ``python benchmarks/run.py`` (see ``run.py``)."""
