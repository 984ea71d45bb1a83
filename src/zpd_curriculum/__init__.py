"""zpd-curriculum: curriculum samplers for PyTorch and the Hugging Face Trainer.

Four strategies, each a ``torch.utils.data.Sampler[int]``: :class:`RandomSampler` (the control),
:class:`EasyToHardSampler`, :class:`HardToEasySampler` and :class:`ZPDAdaptiveSampler`, plus the
pure functions behind them (pacing and ZPD weighting).
"""

from ._pacing import PACINGS, competence
from ._samplers import (
    CurriculumSampler,
    EasyToHardSampler,
    HardToEasySampler,
    RandomSampler,
    ZPDAdaptiveSampler,
)
from ._zpd import effective_sample_size, relative_difficulty, zpd_probabilities, zpd_weights

__version__ = "0.1.0.dev0"

__all__ = [
    "PACINGS",
    "CurriculumSampler",
    "EasyToHardSampler",
    "HardToEasySampler",
    "RandomSampler",
    "ZPDAdaptiveSampler",
    "competence",
    "effective_sample_size",
    "relative_difficulty",
    "zpd_probabilities",
    "zpd_weights",
]
