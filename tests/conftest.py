"""Test configuration: Hypothesis profiles and shared fixtures."""

import os

from hypothesis import HealthCheck, settings

# "ci" is derandomized so a red CI run reproduces exactly; "dev" explores more.
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
