"""Score every example of a dataset by its loss under a model, and cache the scores on disk.

Static curricula (easy-to-hard, hard-to-easy) order a dataset by a difficulty score fixed
before training; the adaptive one starts from it. The score here is the token-mean
next-token loss of each example under a reference model: :func:`score_examples` computes it
in length-sorted batches, and :func:`load_or_score` keys it by a fingerprint of the dataset
and of the model so that it is computed once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._losses import has_fused_lm_head, per_example_from_forward

logger = logging.getLogger(__name__)

__all__ = [
    "PaddingCollator",
    "dataset_fingerprint",
    "load_or_score",
    "model_fingerprint",
    "score_examples",
]


class PaddingCollator:
    """Right-pad ``input_ids``, ``attention_mask`` and ``labels`` into a causal-LM batch.

    Missing ``labels`` default to the ``input_ids`` and a missing ``attention_mask`` to ones.
    Padding is ``pad_token_id`` in ``input_ids``, 0 in ``attention_mask`` and ``-100`` in
    ``labels``, so padding never counts in the loss.

    Args:
        pad_token_id: Token id written into padded ``input_ids`` positions.

    Examples:
        >>> collate = PaddingCollator(pad_token_id=0)
        >>> batch = collate([{"input_ids": [5, 6, 7]}, {"input_ids": [8], "labels": [-100]}])
        >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist()
        ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
        >>> batch["labels"].tolist()
        [[5, 6, 7], [-100, -100, -100]]
    """

    def __init__(self, pad_token_id: int = 0) -> None:
        self.pad_token_id = int(pad_token_id)

    def __repr__(self) -> str:
        return f"PaddingCollator(pad_token_id={self.pad_token_id})"

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("Cannot collate an empty list of examples.")
        input_ids = [_as_ids(example, "input_ids") for example in examples]
        lengths = [ids.numel() for ids in input_ids]
        width = max(lengths)
        batch = {
            "input_ids": torch.full((len(examples), width), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros(len(examples), width, dtype=torch.long),
            "labels": torch.full((len(examples), width), -100, dtype=torch.long),
        }
        for row, (example, ids) in enumerate(zip(examples, input_ids, strict=True)):
            length = ids.numel()
            batch["input_ids"][row, :length] = ids
            for key, default in (("attention_mask", torch.ones_like(ids)), ("labels", ids)):
                values = _as_ids(example, key) if example.get(key) is not None else default
                if values.numel() != length:
                    raise ValueError(
                        f"Example {row} has {length} `input_ids` but {values.numel()} `{key}`; "
                        "they must have the same length."
                    )
                batch[key][row, :length] = values
        return batch


def _as_ids(example: Mapping[str, Any], key: str) -> torch.Tensor:
    return torch.as_tensor(example[key], dtype=torch.long).reshape(-1)


def _row(dataset: Any, index: int) -> Mapping[str, Any]:
    row = dataset[index]
    if not isinstance(row, Mapping) or "input_ids" not in row:
        raise TypeError(
            f"Dataset row {index} is {type(row).__name__}"
            f"{' without `input_ids`' if isinstance(row, Mapping) else ''}; expected a dict with "
            "`input_ids` (and optionally `labels`, `attention_mask`). Tokenize the dataset first."
        )
    return row


def _lengths(dataset: Any) -> np.ndarray:
    column_names = getattr(dataset, "column_names", None)
    if isinstance(column_names, list) and "input_ids" in column_names:
        # A `datasets.Dataset`: read the one column instead of every row.
        column = dataset.with_format(None)["input_ids"]
        return np.fromiter((len(ids) for ids in column), dtype=np.int64, count=len(dataset))
    return np.fromiter(
        (len(_row(dataset, i)["input_ids"]) for i in range(len(dataset))),
        dtype=np.int64,
        count=len(dataset),
    )


def _model_device(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def score_examples(
    model: torch.nn.Module,
    dataset: Any,
    *,
    batch_size: int = 8,
    data_collator: Callable[[list[Mapping[str, Any]]], Mapping[str, Any]] | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = True,
    desc: str = "scoring",
) -> np.ndarray:
    """Token-mean next-token loss of every example of ``dataset`` under ``model``.

    Examples are sorted by length (longest first) and batched, so padding is small; the
    scores come back in dataset order. Runs without gradient with the model in eval mode,
    and puts every submodule back in the mode it was in. Losses are computed with
    :func:`~zpd_curriculum._losses.per_example_loss_sums` (chunked, so no float32 copy of the
    logits); a model patched by TRL's ``SFTTrainer`` is scored through its fused LM head,
    without building logits at all.

    Args:
        model: A causal LM called as ``model(**batch)`` (labels left out) that returns
            ``logits``.
        dataset: A map-style dataset (``datasets.Dataset``, list, ...) of dicts with
            ``input_ids`` and optionally ``labels`` and ``attention_mask``. Without ``labels``
            every token after the first is scored.
        batch_size: Examples per forward.
        data_collator: Turns a list of examples into a batch of tensors. Defaults to
            :class:`PaddingCollator` with ``model.config.pad_token_id`` (or 0). A
            padding-free collator (one flattened row with ``position_ids`` or
            ``cu_seq_lens_q``) also works.
        device: Where batches go; defaults to the device of the model's first parameter.
        show_progress: Show a tqdm progress bar.
        desc: Label of the progress bar.

    Returns:
        float32 array of length ``len(dataset)``; NaN for examples with no label token.

    Raises:
        ValueError: If ``batch_size < 1``.
        TypeError: If a row is not a dict with ``input_ids``.
        ImportError: If ``show_progress=True`` and tqdm is not installed.

    Examples:
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = LlamaForCausalLM(LlamaConfig(
        ...     vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        ...     num_attention_heads=2, num_key_value_heads=1))
        >>> data = [{"input_ids": [1, 2, 3]}, {"input_ids": [4]}, {"input_ids": [5, 6]}]
        >>> scores = score_examples(model, data, batch_size=2, show_progress=False)
        >>> scores.dtype, scores.shape, bool(np.isnan(scores[1]))  # one token: nothing to predict
        (dtype('float32'), (3,), True)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    n = len(dataset)
    scores = np.full(n, np.nan, dtype=np.float32)
    if n == 0:
        return scores
    if data_collator is None:
        pad_token_id = getattr(getattr(model, "config", None), "pad_token_id", None)
        data_collator = PaddingCollator(pad_token_id=0 if pad_token_id is None else pad_token_id)
    device = _model_device(model) if device is None else torch.device(device)
    fused = has_fused_lm_head(model)
    use_cache = getattr(getattr(model, "config", None), "use_cache", None)

    progress = None
    if show_progress:
        try:
            from tqdm.auto import tqdm
        except ImportError as err:  # pragma: no cover - tqdm comes with the `hf` extra
            raise ImportError(
                "`show_progress=True` needs tqdm: `pip install 'zpd-curriculum[hf]'`, or pass "
                "`show_progress=False`."
            ) from err
        progress = tqdm(total=n, desc=desc, unit="ex")

    order = np.argsort(-_lengths(dataset), kind="stable")
    modes = {module: module.training for module in model.modules()}
    sums, counts = [], []
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                indices = order[start : start + batch_size]
                batch = data_collator([_row(dataset, int(i)) for i in indices])
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                model_inputs = dict(batch)
                if fused and batch.get("labels") is not None:
                    model_inputs["fused_lm_head"] = True  # TRL: log-probs without logits
                else:
                    model_inputs.pop("labels", None)  # the model would build its own loss
                if use_cache:
                    model_inputs["use_cache"] = False
                outputs = model(**model_inputs)
                loss_sum, token_count = per_example_from_forward(
                    batch, outputs, num_examples=len(indices)
                )
                sums.append(loss_sum)
                counts.append(token_count)
                if progress is not None:
                    progress.update(len(indices))
    finally:
        for module, training in modes.items():
            module.training = training
        if progress is not None:
            progress.close()

    loss_sum = torch.cat(sums).double()
    token_count = torch.cat(counts)
    mean = torch.where(token_count > 0, loss_sum / token_count.clamp(min=1), float("nan"))
    scores[order] = mean.cpu().numpy().astype(np.float32)
    return scores


def dataset_fingerprint(dataset: Any) -> str:
    """A string that changes when the dataset's tokens change.

    A ``datasets.Dataset`` already carries one (``Dataset._fingerprint``, updated by every
    transform). Otherwise the sha256 of every row's ``input_ids`` (and ``labels`` and
    ``attention_mask`` where present, since they change the scores) is used.

    Args:
        dataset: A map-style dataset of dicts with ``input_ids``.

    Returns:
        A hexadecimal string.

    Examples:
        >>> a = dataset_fingerprint([{"input_ids": [1, 2]}, {"input_ids": [3]}])
        >>> b = dataset_fingerprint([{"input_ids": [1]}, {"input_ids": [2, 3]}])
        >>> len(a), a == b
        (16, False)
    """
    fingerprint = getattr(dataset, "_fingerprint", None)
    if isinstance(fingerprint, str) and fingerprint:
        return fingerprint
    digest = hashlib.sha256()
    digest.update(f"rows={len(dataset)};".encode())
    for index in range(len(dataset)):
        row = _row(dataset, index)
        for key in ("input_ids", "labels", "attention_mask"):
            if row.get(key) is None:
                continue
            values = np.asarray(row[key], dtype=np.int64).reshape(-1)
            digest.update(f"{index}:{key}:{values.size};".encode())
            digest.update(values.tobytes())
    return digest.hexdigest()[:16]


# Config keys that differ between identical models (paths, library versions).
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "_commit_hash")
# Elements hashed per sampled parameter, evenly strided.
_SAMPLE_ELEMENTS = 2**16


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the model's config and of a few of its parameter tensors.

    The config part hashes ``model.config.to_dict()`` without paths or library versions
    (or the class name for a model without a config). The weights part hashes the name,
    shape and dtype of every parameter and the bytes of an evenly strided sample (at most
    65,536 elements) of the first, middle and last parameter and of the first and last
    trainable one (e.g. LoRA adapters), so fine-tuning changes it.

    Args:
        model: Any ``torch.nn.Module``.

    Returns:
        16 hexadecimal characters: 8 for the config, 8 for the weights.

    Examples:
        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
        >>> len(model_fingerprint(a)), model_fingerprint(a) == model_fingerprint(b)
        (16, False)
        >>> _ = b.load_state_dict(a.state_dict())
        >>> model_fingerprint(a) == model_fingerprint(b)
        True
    """
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        config_dict = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
        config_text = json.dumps(config_dict, sort_keys=True, default=str)
    else:
        config_text = type(model).__qualname__
    config_hash = hashlib.sha256(config_text.encode()).hexdigest()[:8]

    named = list(model.named_parameters())
    digest = hashlib.sha256()
    for name, param in named:
        digest.update(f"{name}:{tuple(param.shape)}:{param.dtype};".encode())
    trainable = [i for i, (_, param) in enumerate(named) if param.requires_grad]
    picks = {0, len(named) // 2, len(named) - 1}
    if trainable:
        picks |= {trainable[0], trainable[-1]}
    for index in sorted(i for i in picks if 0 <= i < len(named)):
        name, param = named[index]
        if param.device.type == "meta":
            continue
        flat = param.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // _SAMPLE_ELEMENTS)].contiguous()
        digest.update(name.encode())
        digest.update(sample.cpu().view(torch.uint8).numpy().tobytes())
    return config_hash + digest.hexdigest()[:8]


def load_or_score(
    model: torch.nn.Module,
    dataset: Any,
    cache_dir: str | os.PathLike[str],
    **kwargs: Any,
) -> np.ndarray:
    """:func:`score_examples`, cached on disk by dataset and model fingerprint.

    The scores live in ``cache_dir/zpd_scores-{dataset_fingerprint}-{model_fingerprint}.npy``,
    written to a temporary file in the same directory and moved into place with
    ``os.replace``, so a reader (or a concurrent rank) never sees a partial file. A cached
    file whose shape does not match the dataset is ignored and rewritten.

    Args:
        model: The scoring model.
        dataset: The dataset to score.
        cache_dir: Directory for the cache; created if missing.
        **kwargs: Passed to :func:`score_examples` (they do not enter the cache key).

    Returns:
        float32 array of length ``len(dataset)``.

    Examples:
        >>> import tempfile, torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> model = LlamaForCausalLM(LlamaConfig(
        ...     vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        ...     num_attention_heads=2, num_key_value_heads=1))
        >>> data = [{"input_ids": [1, 2, 3]}, {"input_ids": [5, 6]}]
        >>> with tempfile.TemporaryDirectory() as cache:
        ...     first = load_or_score(model, data, cache, show_progress=False)
        ...     again = load_or_score(model, data, cache, show_progress=False)  # from disk
        >>> bool((first == again).all())
        True
    """
    path = score_cache_path(model, dataset, cache_dir)
    scores = read_score_cache(path, len(dataset))
    if scores is not None:
        return scores
    scores = score_examples(model, dataset, **kwargs)
    write_score_cache(path, scores)
    return scores


def score_cache_path(
    model: torch.nn.Module, dataset: Any, cache_dir: str | os.PathLike[str]
) -> Path:
    """Where :func:`load_or_score` caches the scores of ``model`` on ``dataset``.

    Args:
        model: The scoring model (its fingerprint is part of the name).
        dataset: The dataset (its fingerprint is part of the name).
        cache_dir: The cache directory.

    Returns:
        ``cache_dir/zpd_scores-{dataset_fingerprint}-{model_fingerprint}.npy``.
    """
    name = f"zpd_scores-{dataset_fingerprint(dataset)}-{model_fingerprint(model)}.npy"
    return Path(cache_dir) / name


def read_score_cache(path: str | os.PathLike[str], num_examples: int) -> np.ndarray | None:
    """Cached scores at ``path``, or ``None`` if absent or of the wrong shape or dtype.

    Args:
        path: From :func:`score_cache_path`.
        num_examples: The expected length.

    Returns:
        The float32 scores, or ``None`` (a mismatching file is logged and ignored).
    """
    path = Path(path)
    if not path.exists():
        return None
    scores = np.load(path, allow_pickle=False)
    if scores.shape == (num_examples,) and scores.dtype == np.float32:
        logger.info("Loaded %d cached scores from %s", len(scores), path)
        return scores
    logger.warning(
        "Ignoring cached scores %s: shape %s, dtype %s, expected (%d,) float32; rescoring.",
        path,
        scores.shape,
        scores.dtype,
        num_examples,
    )
    return None


def write_score_cache(path: str | os.PathLike[str], scores: np.ndarray) -> None:
    """Write scores atomically (a temporary file in the same directory, then ``os.replace``).

    Args:
        path: From :func:`score_cache_path`; its directory is created if missing.
        scores: The float32 scores.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".zpd_scores-", suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            np.save(file, np.asarray(scores, dtype=np.float32))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("Scored %d examples; cached at %s", len(scores), path)
