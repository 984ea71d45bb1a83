"""zpd-curriculum: curriculum samplers for PyTorch and the Hugging Face Trainer.

Four strategies, each a ``torch.utils.data.Sampler[int]``: :class:`RandomSampler` (the control),
:class:`EasyToHardSampler`, :class:`HardToEasySampler` and :class:`ZPDAdaptiveSampler`, plus the
pure functions behind them (pacing and ZPD weighting).
"""

from typing import Any

from ._losses import UnobservableLossError
from ._pacing import PACINGS, competence
from ._samplers import (
    CurriculumSampler,
    EasyToHardSampler,
    HardToEasySampler,
    RandomSampler,
)
from ._scoring import score_examples
from ._zpd import effective_sample_size, relative_difficulty, zpd_probabilities, zpd_weights
from ._zpd_sampler import ZPDAdaptiveSampler

__version__ = "0.1.0.dev0"

# Names that need transformers (the ``hf`` extra) load on first use, so the samplers import with
# torch and numpy only.
_LAZY = {
    "RandomCallback": "._callbacks",
    "EasyToHardCallback": "._callbacks",
    "HardToEasyCallback": "._callbacks",
    "ZPDAdaptiveCallback": "._callbacks",
    "CurriculumCallback": "._callbacks",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'zpd_curriculum' has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(_LAZY[name], __name__)
    except ImportError as err:
        raise ImportError(
            f"zpd_curriculum.{name} needs the Hugging Face stack: pip install "
            '"zpd-curriculum[hf]"'
        ) from err
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

__all__ = [
    "PACINGS",
    "CurriculumCallback",
    "CurriculumSampler",
    "EasyToHardCallback",
    "EasyToHardSampler",
    "HardToEasyCallback",
    "HardToEasySampler",
    "RandomCallback",
    "RandomSampler",
    "UnobservableLossError",
    "ZPDAdaptiveCallback",
    "ZPDAdaptiveSampler",
    "competence",
    "effective_sample_size",
    "relative_difficulty",
    "score_examples",
    "zpd_probabilities",
    "zpd_weights",
]
