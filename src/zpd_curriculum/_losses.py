"""Per-example losses observed from a causal-LM training forward, without gradient.

A curriculum that adapts to the model needs the loss of every example in the batch, but the
Trainer only ever sees the batch mean. The functions here recover, from the tensors one
training forward already produced, the summed negative log-likelihood of each example and
the number of label tokens it has, so that ``loss_sum / token_count`` is the example's
token-mean loss and ``loss_sum.sum() / num_items_in_batch`` is the Trainer's loss.

Three kinds of forward are covered:

* **Logits** (the Hugging Face ``*ForCausalLM`` forward): labels are shifted exactly as
  ``transformers.loss.loss_utils.ForCausalLMLoss`` shifts them, and the cross-entropy is
  computed in chunks of tokens, upcasting one chunk at a time, so no float32 copy of the
  full ``(batch, seq_len, vocab)`` logits is ever made.
* **TRL's fused LM head** (``trl.trainer.utils.add_fused_lm_head``, which ``SFTTrainer``
  always installs): the output has no logits but per-token ``log_probs`` and a
  ``label_mask``.
* **Padding-free batches** (TRL ``padding_free=True``, transformers
  ``DataCollatorWithFlattening``): the batch is one flattened row; it is split back into
  examples with ``cu_seq_lens_q`` or, failing that, the resets in ``position_ids``.

``per_example_from_forward`` picks the right path from the forward's keyword arguments and
outputs. Nothing here calls ``.item()`` or ``.cpu()`` on the main path, so observing the
losses does not add a host-device synchronisation to the training step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "UnobservableLossError",
    "check_loss_observable",
    "fused_loss_sums",
    "has_fused_lm_head",
    "per_example_from_forward",
    "per_example_loss_sums",
    "per_token_losses",
    "split_padding_free",
]

# Elements of float32 logits upcast at once: 2**25 floats is 128 MiB, plus as much again for
# the log-softmax that ``cross_entropy`` builds from the chunk.
_CHUNK_ELEMENTS = 2**25


class UnobservableLossError(RuntimeError):
    """A forward whose inputs or outputs do not carry what per-example losses need.

    Raised by :func:`per_example_from_forward` and :func:`check_loss_observable`. The message
    names the setting responsible and how to change it. A subclass of ``RuntimeError`` so
    that a training hook can catch exactly this case, e.g. to skip the label-free forward
    that TRL's ``SFTTrainer`` runs before its fused one under label smoothing.

    Examples:
        >>> import torch
        >>> from zpd_curriculum import UnobservableLossError
        >>> from zpd_curriculum._losses import per_example_from_forward
        >>> try:
        ...     per_example_from_forward({"input_ids": torch.ones(1, 3)}, {"logits": None})
        ... except UnobservableLossError as err:
        ...     print(type(err).__name__, isinstance(err, RuntimeError))
        UnobservableLossError True
    """


def per_token_losses(
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    ignore_index: int = -100,
    shift_labels: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token negative log-likelihood of every position, in chunks and without gradient.

    Position ``t`` of the result is the loss of predicting label ``t + 1`` from logits ``t``.
    Labels are shifted as ``ForCausalLMLoss`` shifts them: padded on the right with
    ``ignore_index`` and moved one step left, so the last position is always ignored. When
    ``shift_labels`` is given (context or sequence parallelism) it is used as-is.

    Args:
        logits: Causal-LM logits of shape ``(batch, seq_len, vocab)``, any floating dtype.
        labels: Labels of shape ``(batch, seq_len)``; ``ignore_index`` marks positions
            without a label. Unused when ``shift_labels`` is given.
        ignore_index: Label value that is not scored.
        shift_labels: Already-shifted labels of shape ``(batch, seq_len)``.
        chunk_size: Tokens upcast to float32 at once. ``None`` picks a size that keeps each
            chunk near 128 MiB.

    Returns:
        ``(nll, mask)``: float32 losses of shape ``(batch, seq_len)``, zero where ignored,
        and the boolean mask of scored positions, both on the logits' device.

    Raises:
        ValueError: If the shapes do not fit a causal-LM forward, or ``chunk_size < 1``.

    Examples:
        >>> import torch
        >>> logits = torch.zeros(1, 3, 4)  # uniform over a vocabulary of 4
        >>> nll, mask = per_token_losses(logits, torch.tensor([[1, 2, -100]]))
        >>> mask.tolist()
        [[True, False, False]]
        >>> round(nll[0, 0].item(), 4)  # log(4)
        1.3863
    """
    if logits.dim() != 3:
        raise ValueError(
            "Expected causal-LM logits of shape (batch, seq_len, vocab), got shape "
            f"{tuple(logits.shape)}. Per-example losses are defined for `*ForCausalLM` models only."
        )
    batch, seq_len, vocab = logits.shape
    if shift_labels is None:
        if labels is None:
            raise ValueError("Pass `labels` or `shift_labels`; both are None.")
        if tuple(labels.shape) != (batch, seq_len):
            raise ValueError(
                f"`labels` has shape {tuple(labels.shape)} but the logits have (batch, seq_len) = "
                f"{(batch, seq_len)}. The logits must cover every labelled position: do not pass "
                "`logits_to_keep` to a forward whose per-example losses you observe."
            )
        target = F.pad(labels[..., 1:], (0, 1), value=ignore_index)  # contiguous
    else:
        if tuple(shift_labels.shape) != (batch, seq_len):
            raise ValueError(
                f"`shift_labels` has shape {tuple(shift_labels.shape)} but the logits have "
                f"(batch, seq_len) = {(batch, seq_len)}."
            )
        target = shift_labels
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(vocab, 1))
    elif chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive number of tokens, got {chunk_size}.")

    # Nothing below builds an autograd graph: the logits are detached (cheaper than a no_grad
    # context, which matters when this runs in a forward hook at every training step).
    if logits.requires_grad:
        logits = logits.detach()
    if target.device != logits.device or target.dtype != torch.long:
        target = target.to(device=logits.device, dtype=torch.long)
    mask = target != ignore_index
    flat = logits.stride(0) == seq_len * logits.stride(1)
    if flat and batch * seq_len <= chunk_size:  # one chunk: a training step's usual case
        flat_logits = logits.view(batch * seq_len, vocab)
        nll = F.cross_entropy(
            flat_logits if flat_logits.dtype == torch.float32 else flat_logits.float(),
            target.reshape(-1),
            ignore_index=ignore_index,
            reduction="none",
        )
        return nll.view(batch, seq_len), mask
    nll = torch.zeros(batch, seq_len, dtype=torch.float32, device=logits.device)
    if flat:
        # (batch, seq_len) flattens without a copy: chunks may span rows.
        blocks = [(logits.view(batch * seq_len, vocab), target.reshape(-1), nll.view(-1))]
    else:
        # e.g. a slice along seq_len of bigger logits: chunk each row separately.
        blocks = [(logits[row], target[row], nll[row]) for row in range(batch)]
    for block_logits, block_target, block_out in blocks:
        for start in range(0, block_logits.shape[0], chunk_size):
            stop = start + chunk_size
            block_out[start:stop] = F.cross_entropy(
                block_logits[start:stop].float(),
                block_target[start:stop],
                ignore_index=ignore_index,
                reduction="none",
            )
    return nll, mask


def per_example_loss_sums(
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    ignore_index: int = -100,
    shift_labels: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token loss and label-token count of every row of a causal-LM batch.

    The shift and the ignored positions are those of transformers' ``ForCausalLMLoss``, so
    ``loss_sum.sum() / num_items_in_batch`` is the loss the model returns when called with
    ``num_items_in_batch``, and ``loss_sum / token_count`` is each row's token-mean loss.
    Computed without gradient, a chunk of tokens at a time (see :func:`per_token_losses`),
    and without synchronising with the device.

    Args:
        logits: Logits of shape ``(batch, seq_len, vocab)``.
        labels: Labels of shape ``(batch, seq_len)``, unshifted.
        ignore_index: Label value that is not scored.
        shift_labels: Already-shifted labels, used as-is instead of ``labels``.
        chunk_size: Tokens upcast to float32 at once; ``None`` picks one.

    Returns:
        ``(loss_sum, token_count)``: float32 and int64 tensors of shape ``(batch,)`` on the
        logits' device.

    Examples:
        >>> import torch
        >>> logits = torch.zeros(2, 3, 4)  # uniform: every scored token costs log(4)
        >>> labels = torch.tensor([[0, 1, 2], [0, 3, -100]])  # labels[:, 0] is never scored
        >>> loss_sum, token_count = per_example_loss_sums(logits, labels)
        >>> token_count.tolist(), [round(x, 4) for x in (loss_sum / token_count).tolist()]
        ([2, 1], [1.3863, 1.3863])
    """
    nll, mask = per_token_losses(
        logits, labels, ignore_index=ignore_index, shift_labels=shift_labels, chunk_size=chunk_size
    )
    return nll.sum(dim=-1), mask.sum(dim=-1, dtype=torch.int64)


def fused_loss_sums(
    log_probs: torch.Tensor, label_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row loss sums and token counts from a fused LM head's per-token outputs.

    TRL's ``add_fused_lm_head`` (which ``SFTTrainer`` installs on every model) makes
    ``model(..., labels=labels, fused_lm_head=True)`` return a ``FusedCausalLMOutput`` with
    ``log_probs`` (the log-probability of each next-token label, already shifted, zero where
    the label is ignored) and ``label_mask``, and no logits.

    Args:
        log_probs: Per-token label log-probabilities, shape ``(batch, n)``.
        label_mask: Boolean mask of scored tokens, same shape.

    Returns:
        ``(loss_sum, token_count)``: float32 and int64 tensors of shape ``(batch,)``.

    Raises:
        ValueError: If the two shapes differ.

    Examples:
        >>> import torch
        >>> log_probs = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])
        >>> mask = torch.tensor([[True, True, False], [True, False, False]])
        >>> fused_loss_sums(log_probs, mask)
        (tensor([3.0000, 0.5000]), tensor([2, 1]))
    """
    nll, mask = _fused_token_losses(log_probs, label_mask)
    return nll.sum(dim=-1), mask.sum(dim=-1, dtype=torch.int64)


def _fused_token_losses(
    log_probs: torch.Tensor, label_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    if log_probs.shape != label_mask.shape:
        raise ValueError(
            f"`log_probs` has shape {tuple(log_probs.shape)} but `label_mask` has "
            f"{tuple(label_mask.shape)}; pass both fields of the same fused output."
        )
    with torch.no_grad():
        mask = label_mask.to(torch.bool)
        return torch.where(mask, -log_probs.detach().float(), 0.0), mask


def split_padding_free(
    token_losses: torch.Tensor,
    token_mask: torch.Tensor,
    *,
    cu_seq_lens: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split one flattened (padding-free) row of per-token losses into per-sequence sums.

    Per-token index ``t`` scores the token at position ``t + 1`` (the shifted convention of
    :func:`per_token_losses` and of fused ``log_probs``), so its loss belongs to the
    sequence that contains position ``t + 1``.

    Sequence boundaries come from ``cu_seq_lens`` (cumulative lengths ``[0, l0, l0 + l1,
    ..., total]``, TRL's ``cu_seq_lens_q``), which costs no device synchronisation, or else
    from ``position_ids``, where, as in transformers' ``find_packed_sequence_indices``, a
    sequence starts wherever the position does not grow by one. The latter reads the number
    of sequences back from the device once.

    Args:
        token_losses: Per-token losses of shape ``(n,)`` or ``(1, n)``, zero where ignored.
        token_mask: Boolean mask of scored tokens, same shape.
        cu_seq_lens: Cumulative sequence lengths of the flattened row.
        position_ids: Position ids of shape ``(total,)`` or ``(1, total)``.

    Returns:
        ``(loss_sum, token_count)``, float32 and int64, one entry per sequence. Trailing
        zero-count entries can be padding (``pad_to_multiple_of`` makes every padding token
        a sequence of its own).

    Raises:
        ValueError: If neither or both boundary sources are given, or the shapes are wrong.

    Examples:
        >>> import torch
        >>> losses = torch.tensor([1.0, 2.0, 0.0, 4.0, 0.0])  # position 3 starts sequence 2
        >>> mask = torch.tensor([True, True, False, True, False])
        >>> split_padding_free(losses, mask, cu_seq_lens=torch.tensor([0, 3, 6]))
        (tensor([3., 4.]), tensor([2, 1]))
        >>> split_padding_free(losses, mask, position_ids=torch.tensor([0, 1, 2, 0, 1, 2]))
        (tensor([3., 4.]), tensor([2, 1]))
    """
    if (cu_seq_lens is None) == (position_ids is None):
        raise ValueError("Pass exactly one of `cu_seq_lens` and `position_ids`.")
    if token_losses.dim() == 2 and token_losses.shape[0] == 1:
        token_losses, token_mask = token_losses[0], token_mask[0]
    if token_losses.dim() != 1 or token_losses.shape != token_mask.shape:
        raise ValueError(
            "Expected per-token losses and mask of one flattened row, shape (n,) or (1, n); got "
            f"{tuple(token_losses.shape)} and {tuple(token_mask.shape)}. A padding-free batch "
            "has batch size 1."
        )
    device = token_losses.device
    with torch.no_grad():
        positions = torch.arange(1, token_losses.shape[0] + 1, device=device)
        if cu_seq_lens is not None:
            bounds = cu_seq_lens.to(device=device, dtype=torch.int64).reshape(-1)
            num_sequences = bounds.numel() - 1
            if num_sequences < 1:
                raise ValueError(f"`cu_seq_lens` needs at least two entries, got {bounds.numel()}.")
            segment = torch.searchsorted(bounds, positions, right=True) - 1
        else:
            pos = position_ids.to(device).reshape(-1)
            if pos.numel() == 0:
                raise ValueError("`position_ids` is empty.")
            starts = torch.diff(pos, prepend=pos[:1] - 1) != 1
            segment_of_position = torch.cumsum(starts, dim=0)
            num_sequences = int(segment_of_position[-1]) + 1  # one sync: the output size
            segment = segment_of_position[positions.clamp(max=pos.numel() - 1)]
        segment = segment.clamp(0, num_sequences - 1)
        mask = token_mask.to(torch.bool)
        losses = torch.where(mask, token_losses.detach().float(), 0.0)
        loss_sum = torch.zeros(num_sequences, dtype=torch.float32, device=device)
        token_count = torch.zeros(num_sequences, dtype=torch.int64, device=device)
        loss_sum.index_add_(0, segment, losses)
        token_count.index_add_(0, segment, mask.to(torch.int64))
    return loss_sum, token_count


def _field(outputs: Any, name: str) -> Any:
    if isinstance(outputs, Mapping):
        return outputs.get(name)
    return getattr(outputs, name, None)


_NO_LABELS = (
    "The forward received no `labels` (nor `shift_labels`), so per-example losses cannot be "
    "observed. `Trainer` removes `labels` from the model inputs when "
    "`TrainingArguments.label_smoothing_factor > 0` or a `compute_loss_func` is passed to "
    "`Trainer(...)`: set `label_smoothing_factor=0.0` and drop `compute_loss_func`. Under TRL's "
    "`SFTTrainer` those settings also run a label-free forward, but the fused forward that "
    "follows it carries the labels: skip forwards that raise this error when "
    "`has_fused_lm_head(model)` is true."
)

_NO_LOGITS = (
    "The forward returned neither `logits` nor per-token `log_probs`/`label_mask`, so "
    "per-example losses cannot be observed. Liger's fused linear cross-entropy drops the logits "
    "in training: with `use_liger_kernel=True`, set "
    '`liger_kernel_config={"fused_linear_cross_entropy": False}`. A forward called with '
    "`return_dict=False` returns a tuple: call it with `return_dict=True`."
)


def per_example_from_forward(
    inputs: Mapping[str, Any],
    outputs: Any,
    *,
    num_examples: int | None = None,
    ignore_index: int = -100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss sums and label-token counts from one causal-LM forward.

    Reads the forward's keyword arguments (what a forward hook registered with
    ``with_kwargs=True`` receives, or the ``inputs`` dict of ``Trainer.compute_loss``) and
    its outputs, and picks the path:

    1. outputs with ``log_probs`` and ``label_mask`` (TRL's fused LM head,
       ``fused_lm_head=True``): :func:`fused_loss_sums`;
    2. outputs with ``logits`` and inputs with ``labels`` or ``shift_labels``:
       :func:`per_token_losses`;
    3. a padding-free batch (``cu_seq_lens_q`` in the inputs, or ``position_ids`` of a single
       row without ``attention_mask``): the flattened row is split into its sequences with
       :func:`split_padding_free`; otherwise each row is one example.

    Args:
        inputs: The forward's keyword arguments.
        outputs: The forward's output (a ``ModelOutput`` or any mapping or object with the
            fields above).
        num_examples: How many examples the batch was collated from. When given, it is
            checked against the rows or sequences found: a padding-free batch with more
            sequences than examples is accepted only if the extra, trailing ones have no label
            tokens (padding from ``pad_to_multiple_of``), and they are dropped. That check
            reads one flag back from the device.
        ignore_index: Label value that is not scored (logits path).

    Returns:
        ``(loss_sum, token_count)``: float32 and int64 tensors with one entry per example,
        on the device of the outputs.

    Raises:
        UnobservableLossError: If the forward had no labels, or returned neither logits nor
            per-token log-probabilities. The message names the setting and the fix.
        ValueError: If ``num_examples`` does not match the batch, e.g. because packing merged
            several examples into one sequence.

    Examples:
        >>> import torch
        >>> ids = torch.tensor([[3, 1, 2]])
        >>> inputs = {"input_ids": ids, "labels": ids}
        >>> outputs = {"logits": torch.zeros(1, 3, 4)}
        >>> loss_sum, token_count = per_example_from_forward(inputs, outputs)
        >>> token_count.tolist(), round(loss_sum.item(), 4)
        ([2], 2.7726)
        >>> per_example_from_forward({"input_ids": ids}, outputs)
        Traceback (most recent call last):
        ...
        zpd_curriculum._losses.UnobservableLossError: The forward received no `labels` ...
    """
    if not isinstance(inputs, Mapping):
        raise TypeError(
            f"`inputs` must be the forward's keyword arguments as a mapping, got "
            f"{type(inputs).__name__}. Register the forward hook with `with_kwargs=True`."
        )
    if isinstance(outputs, tuple) and not isinstance(outputs, Mapping):
        raise UnobservableLossError(_NO_LOGITS)
    log_probs = _field(outputs, "log_probs")
    if log_probs is not None:
        label_mask = _field(outputs, "label_mask")
        if label_mask is None:
            raise UnobservableLossError(
                "The forward returned `log_probs` without `label_mask`; per-example token counts "
                "need both (TRL's `FusedCausalLMOutput` always has them)."
            )
        token_losses, token_mask = _fused_token_losses(log_probs, label_mask)
    else:
        labels = inputs.get("labels")
        shift_labels = inputs.get("shift_labels")
        if labels is None and shift_labels is None:
            raise UnobservableLossError(_NO_LABELS)
        logits = _field(outputs, "logits")
        if logits is None:
            raise UnobservableLossError(_NO_LOGITS)
        token_losses, token_mask = per_token_losses(
            logits, labels, ignore_index=ignore_index, shift_labels=shift_labels
        )

    cu_seq_lens = inputs.get("cu_seq_lens_q")
    position_ids = inputs.get("position_ids")
    padding_free = cu_seq_lens is not None or (
        position_ids is not None
        and inputs.get("attention_mask") is None
        and token_losses.shape[0] == 1
    )
    if not padding_free:
        loss_sum = token_losses.sum(dim=-1)
        token_count = token_mask.sum(dim=-1, dtype=torch.int64)
        if num_examples is not None and loss_sum.shape[0] != num_examples:
            raise ValueError(
                f"The batch has {loss_sum.shape[0]} rows but `num_examples={num_examples}`. Each "
                "row must be one example: packing (`packing=True`) merges several examples into "
                "one row; set `packing=False` (and `padding_free=True` to keep the speed)."
            )
        return loss_sum, token_count

    if cu_seq_lens is not None:
        loss_sum, token_count = split_padding_free(
            token_losses, token_mask, cu_seq_lens=cu_seq_lens
        )
    else:
        loss_sum, token_count = split_padding_free(
            token_losses, token_mask, position_ids=position_ids
        )
    if num_examples is None or loss_sum.shape[0] == num_examples:
        return loss_sum, token_count
    if loss_sum.shape[0] < num_examples:
        raise ValueError(
            f"The padding-free batch has {loss_sum.shape[0]} sequences but "
            f"`num_examples={num_examples}`; the collator must flatten each example into exactly "
            "one sequence."
        )
    if bool(token_count[num_examples:].any()):
        raise ValueError(
            f"The padding-free batch has {loss_sum.shape[0]} sequences with label tokens but "
            f"`num_examples={num_examples}`: packing split or merged examples, so sequences no "
            "longer match dataset rows. Set `packing=False` (keep `padding_free=True`)."
        )
    return loss_sum[:num_examples], token_count[:num_examples]


def has_fused_lm_head(model: torch.nn.Module) -> bool:
    """Whether TRL's ``add_fused_lm_head`` patched ``model`` or one of its submodules.

    ``trl.SFTTrainer`` (TRL >= 1.16) patches every model it trains: its ``compute_loss``
    calls ``model(**inputs, fused_lm_head=True)``, whose output has per-token ``log_probs``
    instead of logits. Under label smoothing or a ``compute_loss_func`` it first runs a
    label-free forward for the loss, then the fused one.

    Args:
        model: The model, possibly wrapped (PEFT, DDP).

    Returns:
        True if some submodule's ``forward`` is TRL's fused forward.

    Examples:
        >>> import torch
        >>> has_fused_lm_head(torch.nn.Linear(2, 2))
        False
    """
    for module in model.modules():
        forward = vars(module).get("forward")
        code = getattr(getattr(forward, "__func__", None), "__code__", None)
        if code is not None and code.co_name == "_fused_forward":
            return True
    return False


def check_loss_observable(args: Any) -> None:
    """Raise if training arguments make per-example losses impossible to observe.

    Some settings cannot be seen from a single forward, so check them once, before training:

    * ``packing=True`` (TRL ``SFTConfig``): several dataset rows become one training row,
      so a loss can no longer be attributed to a dataset index.
    * ``label_smoothing_factor > 0`` with the plain ``Trainer``: labels never reach the
      model. (TRL's ``SFTTrainer`` still runs a fused forward with labels, so it is fine.)
    * ``use_liger_kernel=True`` with the plain ``Trainer`` and Liger's fused linear
      cross-entropy (its default): the training forward returns no logits.

    Args:
        args: A ``transformers.TrainingArguments`` (or TRL config), or any object with those
            attributes.

    Raises:
        UnobservableLossError: Naming the setting and the fix.

    Examples:
        >>> from types import SimpleNamespace
        >>> check_loss_observable(SimpleNamespace(packing=False, label_smoothing_factor=0.0))
        >>> check_loss_observable(SimpleNamespace(packing=True))
        Traceback (most recent call last):
        ...
        zpd_curriculum._losses.UnobservableLossError: `packing=True` merges ...
    """
    is_trl_sft = any(cls.__name__ == "SFTConfig" for cls in type(args).__mro__)
    if getattr(args, "packing", False):
        raise UnobservableLossError(
            "`packing=True` merges several dataset rows into one training row, so per-example "
            "losses cannot be attributed to dataset indices. Set `packing=False`; "
            "`padding_free=True` keeps most of the speed and one sequence per example."
        )
    if is_trl_sft:
        return
    smoothing = getattr(args, "label_smoothing_factor", 0.0) or 0.0
    if smoothing > 0:
        raise UnobservableLossError(
            f"`label_smoothing_factor={smoothing}` makes `Trainer` remove `labels` from the "
            "model inputs, so per-example losses cannot be observed. Set "
            "`label_smoothing_factor=0.0`."
        )
    if getattr(args, "use_liger_kernel", False):
        config = getattr(args, "liger_kernel_config", None) or {}
        if config.get("fused_linear_cross_entropy", True):
            raise UnobservableLossError(
                "`use_liger_kernel=True` applies Liger's fused linear cross-entropy, whose "
                "training forward returns no logits. Pass "
                '`liger_kernel_config={"fused_linear_cross_entropy": False}`.'
            )
