"""Tests for zpd_curriculum._losses: per-example losses from a causal-LM forward."""

from __future__ import annotations

import tempfile
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode
from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

from zpd_curriculum._losses import (
    UnobservableLossError,
    check_loss_observable,
    fused_loss_sums,
    has_fused_lm_head,
    per_example_from_forward,
    per_example_loss_sums,
    per_token_losses,
    split_padding_free,
)

VOCAB = 64
ATOL = 1e-5


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    return tiny_llama()


# A batch: per-row (length, number of leading prompt tokens masked with -100), right-padded.
rows_strategy = st.lists(st.tuples(st.integers(1, 12), st.integers(0, 4)), min_size=1, max_size=4)


def make_batch(rows, seed):
    g = torch.Generator().manual_seed(seed)
    width = max(length for length, _ in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (length, prompt) in enumerate(rows):
        ids = torch.randint(1, VOCAB, (length,), generator=g)
        input_ids[r, :length] = ids
        attention_mask[r, :length] = 1
        labels[r, :length] = ids
        labels[r, : min(prompt, length)] = -100
    return input_ids, attention_mask, labels


def own_loss(model, input_ids, labels, **kwargs):
    with torch.no_grad():
        return model(input_ids=input_ids, labels=labels, **kwargs).loss


# ---------------------------------------------------------------------------------------------
# Consistency with the model's own loss


@settings(deadline=None, max_examples=15)
@given(rows=rows_strategy, seed=st.integers(0, 2**16))
def test_sums_reproduce_model_loss_with_num_items_in_batch(model, rows, seed):
    input_ids, attention_mask, labels = make_batch(rows, seed)
    num_items = int((labels[:, 1:] != -100).sum())  # what Trainer counts
    if num_items == 0:
        return
    with torch.no_grad():
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            num_items_in_batch=torch.tensor(num_items),
        )
    loss_sum, token_count = per_example_loss_sums(out.logits, labels)
    assert loss_sum.dtype == torch.float32 and token_count.dtype == torch.int64
    assert loss_sum.shape == token_count.shape == (len(rows),)
    assert int(token_count.sum()) == num_items
    torch.testing.assert_close(loss_sum.sum() / num_items, out.loss, atol=ATOL, rtol=0)


@settings(deadline=None, max_examples=6)
@given(rows=rows_strategy, seed=st.integers(0, 2**16))
def test_row_means_equal_forward_of_each_row_alone(model, rows, seed):
    input_ids, attention_mask, labels = make_batch(rows, seed)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    loss_sum, token_count = per_example_loss_sums(logits, labels)
    for r, (length, _) in enumerate(rows):
        expected_count = int((labels[r, 1:length] != -100).sum())
        assert int(token_count[r]) == expected_count
        if expected_count == 0:
            assert float(loss_sum[r]) == 0.0
            continue
        alone = own_loss(model, input_ids[r : r + 1, :length], labels[r : r + 1, :length])
        torch.testing.assert_close(loss_sum[r] / token_count[r], alone, atol=ATOL, rtol=0)


def test_shift_labels_are_used_as_is(model):
    input_ids, attention_mask, labels = make_batch([(7, 2), (5, 0)], seed=3)
    shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    expected = per_example_loss_sums(logits, labels)
    # `labels` is ignored when `shift_labels` is given: pass garbage to prove it.
    got = per_example_loss_sums(logits, torch.zeros_like(labels), shift_labels=shift_labels)
    torch.testing.assert_close(got, expected)


# ---------------------------------------------------------------------------------------------
# Chunking


@st.composite
def logits_and_labels(draw):
    batch, seq_len, vocab = (
        draw(st.integers(1, 4)),
        draw(st.integers(1, 9)),
        draw(st.integers(2, 17)),
    )
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, seq_len, vocab, generator=g) * 3
    labels = torch.randint(0, vocab, (batch, seq_len), generator=g)
    labels[torch.rand(batch, seq_len, generator=g) < 0.3] = -100
    return logits, labels


def reference_nll(logits, labels):
    shifted = F.pad(labels, (0, 1), value=-100)[:, 1:]
    nll = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        shifted.reshape(-1),
        ignore_index=-100,
        reduction="none",
    )
    return nll.view(labels.shape), shifted != -100


@settings(deadline=None, max_examples=40)
@given(data=logits_and_labels(), chunk_size=st.integers(1, 40))
def test_chunked_equals_unchunked(data, chunk_size):
    logits, labels = data
    nll, mask = per_token_losses(logits, labels, chunk_size=chunk_size)
    ref_nll, ref_mask = reference_nll(logits, labels)
    assert torch.equal(mask, ref_mask)
    torch.testing.assert_close(nll, ref_nll, atol=1e-6, rtol=1e-6)
    whole = per_example_loss_sums(logits, labels, chunk_size=10**9)
    torch.testing.assert_close(
        per_example_loss_sums(logits, labels, chunk_size=chunk_size), whole, atol=1e-5, rtol=1e-6
    )


@settings(deadline=None, max_examples=30)
@given(data=logits_and_labels(), chunk_size=st.integers(1, 40), keep=st.integers(1, 9))
def test_chunking_non_contiguous_logits(data, chunk_size, keep):
    # A slice along seq_len cannot be flattened without a copy: rows are chunked one by one.
    logits, labels = data
    keep = min(keep, logits.shape[1])
    sliced = logits[:, :keep]
    got = per_token_losses(sliced, labels[:, :keep], chunk_size=chunk_size)
    want = reference_nll(sliced.contiguous(), labels[:, :keep])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


@settings(deadline=None, max_examples=20)
@given(data=logits_and_labels(), chunk_size=st.integers(1, 40))
def test_half_precision_logits_upcast_per_chunk(data, chunk_size):
    logits, labels = data
    half = logits.to(torch.bfloat16)
    nll, _ = per_token_losses(half, labels, chunk_size=chunk_size)
    assert nll.dtype == torch.float32
    torch.testing.assert_close(nll, reference_nll(half.float(), labels)[0], atol=1e-6, rtol=1e-6)


class _Recorder(TorchFunctionMode):
    """Records every torch call and the largest float32 tensor any of them returned."""

    SYNCS = frozenset(
        {"item", "__bool__", "__int__", "__float__", "__index__", "cpu", "tolist", "numpy"}
    )

    def __init__(self):
        super().__init__()
        self.names: list[str] = []
        self.largest_fp32 = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        self.names.append(getattr(func, "__name__", repr(func)))
        for out in result if isinstance(result, tuple) else (result,):
            if isinstance(out, torch.Tensor) and out.dtype == torch.float32:
                self.largest_fp32 = max(self.largest_fp32, out.numel())
        return result

    @property
    def syncs(self) -> list[str]:
        return [name for name in self.names if name in self.SYNCS]


def test_no_full_float32_copy_of_half_logits():
    batch, seq_len, vocab = 3, 16, 50
    logits = torch.randn(batch, seq_len, vocab).to(torch.bfloat16)
    labels = torch.randint(0, vocab, (batch, seq_len))
    with _Recorder() as recorder:
        per_example_loss_sums(logits, labels, chunk_size=4)
    assert recorder.largest_fp32 <= 4 * vocab < batch * seq_len * vocab


def test_no_host_device_sync_on_logits_and_fused_and_cu_seq_lens_paths():
    logits = torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    flat = {"labels": labels[:1], "cu_seq_lens_q": torch.tensor([0, 2, 5], dtype=torch.int32)}
    fused = {"log_probs": -torch.rand(2, 4), "label_mask": torch.rand(2, 4) > 0.5}
    with _Recorder() as recorder:
        per_example_loss_sums(logits, labels)
        per_example_from_forward({"labels": labels}, {"logits": logits}, num_examples=2)
        per_example_from_forward({"labels": labels}, fused, num_examples=2)
        per_example_from_forward(flat, {"logits": logits[:1]}, num_examples=2)
    assert recorder.syncs == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_cuda_sync_on_logits_path():
    logits = torch.randn(2, 9, 33, device="cuda", dtype=torch.bfloat16)
    labels = torch.randint(0, 33, (2, 9), device="cuda")
    labels[0, :3] = -100
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss_sum, token_count = per_example_loss_sums(logits, labels, chunk_size=5)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss_sum.device.type == token_count.device.type == "cuda"
    torch.testing.assert_close(
        loss_sum.cpu(), per_example_loss_sums(logits.cpu(), labels.cpu())[0], atol=1e-4, rtol=1e-4
    )


# ---------------------------------------------------------------------------------------------
# Fused LM head outputs (TRL)


def test_fused_loss_sums_values():
    log_probs = torch.tensor([[-1.0, -2.0, -7.0], [-0.5, -9.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    loss_sum, token_count = fused_loss_sums(log_probs, mask)
    torch.testing.assert_close(loss_sum, torch.tensor([3.0, 0.5]))
    assert token_count.tolist() == [2, 1]


def test_fused_loss_sums_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same fused output"):
        fused_loss_sums(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.bool))


def test_trl_fused_head_on_model_matches_logits_path():
    from trl.trainer.utils import add_fused_lm_head

    plain = tiny_llama(seed=1)
    patched = tiny_llama(seed=1)
    add_fused_lm_head(patched, outputs=("log_probs", "entropy", "is_top1"))
    assert has_fused_lm_head(patched) and not has_fused_lm_head(plain)
    input_ids, attention_mask, labels = make_batch([(9, 3), (4, 0), (6, 1)], seed=5)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    with torch.no_grad():
        fused_out = patched(**inputs, fused_lm_head=True)
        plain_out = plain(**inputs)
    assert fused_out.get("logits") is None and fused_out.log_probs.shape == (3, 8)
    got = per_example_from_forward({**inputs, "fused_lm_head": True}, fused_out, num_examples=3)
    want = per_example_from_forward(inputs, plain_out, num_examples=3)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------
# Padding-free split


@settings(deadline=None, max_examples=60)
@given(
    lengths=st.lists(st.integers(1, 8), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
    shifted_len=st.sampled_from(["total", "total-1"]),
)
def test_split_padding_free_matches_per_segment_sums(lengths, seed, shifted_len):
    g = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    n = total if shifted_len == "total" else total - 1
    losses = torch.rand(n, generator=g)
    mask = torch.rand(n, generator=g) < 0.7
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    position_ids = torch.cat([torch.arange(length) for length in lengths])

    want_sum = torch.zeros(len(lengths))
    want_count = torch.zeros(len(lengths), dtype=torch.int64)
    for t in range(n):  # index t scores position t + 1
        segment = min(int(torch.searchsorted(cu[1:], t + 1, right=True)), len(lengths) - 1)
        if mask[t]:
            want_sum[segment] += losses[t]
            want_count[segment] += 1
    for kwargs in ({"cu_seq_lens": cu}, {"position_ids": position_ids[None]}):
        got_sum, got_count = split_padding_free(losses[None], mask[None], **kwargs)
        torch.testing.assert_close(got_sum, want_sum)
        assert torch.equal(got_count, want_count)


def test_split_padding_free_argument_errors():
    losses, mask = torch.zeros(4), torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="exactly one"):
        split_padding_free(losses, mask)
    with pytest.raises(ValueError, match="batch size 1"):
        split_padding_free(
            torch.zeros(2, 4), torch.ones(2, 4, dtype=torch.bool), cu_seq_lens=[0, 4]
        )


def flatten(rows, seed, pad_to=None):
    """A padding-free batch as TRL's collator builds it, and the per-row unpadded tensors."""
    input_ids, _, labels = make_batch(rows, seed)
    ids = [input_ids[r, :length] for r, (length, _) in enumerate(rows)]
    lbl = [labels[r, :length].clone() for r, (length, _) in enumerate(rows)]
    pos = [torch.arange(length) for length, _ in rows]
    flat_ids, flat_labels, flat_pos = torch.cat(ids), torch.cat(lbl), torch.cat(pos)
    if pad_to is not None:
        extra = -flat_ids.numel() % pad_to
        flat_ids = F.pad(flat_ids, (0, extra))
        flat_labels = F.pad(flat_labels, (0, extra), value=-100)
        flat_pos = F.pad(flat_pos, (0, extra))
    flat_labels[flat_pos == 0] = -100
    starts = (flat_pos == 0).nonzero().flatten()
    cu = torch.cat([starts, torch.tensor([flat_pos.numel()])]).to(torch.int32)
    inputs = {
        "input_ids": flat_ids[None],
        "labels": flat_labels[None],
        "position_ids": flat_pos[None],
        "cu_seq_lens_q": cu,
        "cu_seq_lens_k": cu,
    }
    return inputs, ids, lbl


@settings(deadline=None, max_examples=8)
@given(
    rows=rows_strategy,
    seed=st.integers(0, 2**16),
    use_cu=st.booleans(),
    pad_to=st.sampled_from([None, 8]),
)
def test_padding_free_forward_splits_into_examples(model, rows, seed, use_cu, pad_to):
    # Compared with the padded batch, whose rows are checked against lone forwards above.
    inputs, _, _ = flatten(rows, seed, pad_to)
    if not use_cu:  # transformers' DataCollatorWithFlattening: position_ids only
        inputs = {k: v for k, v in inputs.items() if not k.startswith("cu_seq_lens")}
    forward_kwargs = {k: v for k, v in inputs.items() if k != "labels"}
    forward_kwargs["use_cache"] = False  # a cache turns off packed-sequence detection
    input_ids, attention_mask, labels = make_batch(rows, seed)
    labels[:, 0] = -100  # the padding-free collator masks each sequence's first label
    with torch.no_grad():
        flat_out = model(**forward_kwargs)
        padded_out = model(input_ids=input_ids, attention_mask=attention_mask)
    got = per_example_from_forward(inputs, flat_out, num_examples=len(rows))
    want = per_example_loss_sums(padded_out.logits, labels)
    assert got[0].shape == (len(rows),)
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], atol=ATOL * 16, rtol=ATOL)


# ---------------------------------------------------------------------------------------------
# Failure modes name the fix


def test_no_labels_names_label_smoothing_and_compute_loss_func():
    outputs = {"logits": torch.zeros(1, 3, 5)}
    with pytest.raises(UnobservableLossError) as info:
        per_example_from_forward({"input_ids": torch.ones(1, 3, dtype=torch.long)}, outputs)
    message = str(info.value)
    assert "label_smoothing_factor=0.0" in message and "compute_loss_func" in message


@pytest.mark.parametrize(
    "outputs",
    [
        {"loss": torch.tensor(1.0)},
        {"loss": torch.tensor(1.0), "logits": None},
        (torch.tensor(1.0),),
    ],
    ids=["no-logits", "logits-none", "tuple"],
)
def test_no_logits_names_liger_fix(outputs):
    inputs = {"labels": torch.ones(1, 3, dtype=torch.long)}
    with pytest.raises(UnobservableLossError, match='"fused_linear_cross_entropy": False'):
        per_example_from_forward(inputs, outputs)


def test_log_probs_without_label_mask_is_rejected():
    inputs = {"labels": torch.ones(1, 3, dtype=torch.long)}
    with pytest.raises(UnobservableLossError, match="label_mask"):
        per_example_from_forward(inputs, {"log_probs": torch.zeros(1, 2)})


def test_truncated_logits_name_logits_to_keep():
    with pytest.raises(ValueError, match="logits_to_keep"):
        per_example_loss_sums(torch.zeros(2, 1, 5), torch.zeros(2, 4, dtype=torch.long))


def test_non_causal_logits_are_rejected():
    with pytest.raises(ValueError, match="ForCausalLM"):
        per_example_loss_sums(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))


def test_bad_chunk_size_is_rejected():
    with pytest.raises(ValueError, match="chunk_size"):
        per_token_losses(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), chunk_size=0)


def test_row_count_mismatch_names_packing():
    inputs = {"labels": torch.ones(2, 3, dtype=torch.long)}
    with pytest.raises(ValueError, match="packing=False"):
        per_example_from_forward(inputs, {"logits": torch.zeros(2, 3, 5)}, num_examples=3)


def test_packed_padding_free_batch_names_packing(model):
    # Two packed training rows, four documents: sequences with label tokens outnumber examples.
    inputs, _, _ = flatten([(5, 0), (4, 0), (6, 0), (3, 0)], seed=1)
    with torch.no_grad():
        out = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
    with pytest.raises(ValueError, match="packing=False"):
        per_example_from_forward(inputs, out, num_examples=2)
    with pytest.raises(ValueError, match="exactly one sequence"):
        per_example_from_forward(inputs, out, num_examples=5)


def test_inputs_must_be_a_mapping():
    with pytest.raises(TypeError, match="with_kwargs=True"):
        per_example_from_forward((torch.zeros(1, 3),), {"logits": torch.zeros(1, 3, 5)})


def test_check_loss_observable_settings(tmp_path):
    plain = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    check_loss_observable(plain)
    smoothing = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, label_smoothing_factor=0.1
    )
    with pytest.raises(UnobservableLossError, match="label_smoothing_factor=0.0"):
        check_loss_observable(smoothing)
    with pytest.raises(UnobservableLossError, match='"fused_linear_cross_entropy": False'):
        check_loss_observable(SimpleNamespace(use_liger_kernel=True))
    check_loss_observable(
        SimpleNamespace(
            use_liger_kernel=True, liger_kernel_config={"fused_linear_cross_entropy": False}
        )
    )
    with pytest.raises(UnobservableLossError, match="Set `packing=False`"):
        check_loss_observable(SimpleNamespace(packing=True))


# ---------------------------------------------------------------------------------------------
# Against the real trainers. Each trains one step on CPU with a forward hook that records what
# the model received and returned; references are computed before the step, with the same
# weights.

# TRL's SFTConfig defaults `gradient_checkpointing=True`, which transformers 5 deprecates; not ours.
ignore_gc_deprecation = pytest.mark.filterwarnings(
    "ignore:`gradient_checkpointing` is deprecated:FutureWarning"
)


def word_level_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t1"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="t0", unk_token="t1", eos_token="t2"
    )


def tokenized_rows(n=8, seed=11):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(3, 12, (1,), generator=g))
        rows.append({"input_ids": torch.randint(3, VOCAB, (length,), generator=g).tolist()})
    return rows


def reference_losses(model, rows):
    """token-mean loss and count of every row alone, keyed by its input_ids."""
    table = {}
    for row in rows:
        ids = torch.tensor([row["input_ids"]])
        table[tuple(row["input_ids"])] = (float(own_loss(model, ids, ids)), ids.shape[1] - 1)
    return table


def record_forwards(model):
    seen = []

    def hook(module, args, kwargs, output):
        seen.append((dict(kwargs), output))

    handle = model.register_forward_hook(hook, with_kwargs=True)
    return seen, handle


def run_sft(model, rows, **config):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        max_steps=1,
        per_device_train_batch_size=4,
        bf16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        **config,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=word_level_tokenizer(),
    )
    assert has_fused_lm_head(trainer.model)
    seen, handle = record_forwards(model)
    try:
        trainer.train()
    finally:
        handle.remove()
    return args, seen


def example_ids(inputs):
    """input_ids of every example of a recorded batch, padded or padding-free."""
    ids = inputs["input_ids"]
    if "cu_seq_lens_q" in inputs:
        cu = inputs["cu_seq_lens_q"].tolist()
        return [tuple(ids[0, a:b].tolist()) for a, b in zip(cu[:-1], cu[1:], strict=True)]
    mask = inputs["attention_mask"].bool()
    return [tuple(ids[r][mask[r]].tolist()) for r in range(ids.shape[0])]


@ignore_gc_deprecation
@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "padding-free"])
def test_sft_trainer_fused_forward(padding_free):
    model, rows = tiny_llama(seed=2), tokenized_rows()
    reference = reference_losses(model, rows)
    config = {"padding_free": True, "max_length": None} if padding_free else {}
    _, seen = run_sft(model, rows, **config)

    assert len(seen) == 1
    inputs, outputs = seen[0]
    assert inputs["fused_lm_head"] is True and "num_items_in_batch" not in inputs
    assert outputs.get("logits") is None and outputs.log_probs is not None
    assert ("cu_seq_lens_q" in inputs) == padding_free
    loss_sum, token_count = per_example_from_forward(inputs, outputs, num_examples=4)
    for r, ids in enumerate(example_ids(inputs)):
        want_mean, want_count = reference[ids]
        assert int(token_count[r]) == want_count
        assert abs(float(loss_sum[r] / token_count[r]) - want_mean) < ATOL


@ignore_gc_deprecation
# SFTTrainer deprecates label smoothing; this test exercises it on purpose.
@pytest.mark.filterwarnings("ignore:`label_smoothing_factor` is deprecated:FutureWarning")
def test_sft_trainer_label_smoothing_runs_label_free_then_fused_forward():
    model, rows = tiny_llama(seed=3), tokenized_rows()
    reference = reference_losses(model, rows)
    args, seen = run_sft(model, rows, label_smoothing_factor=0.1)
    check_loss_observable(args)  # SFTTrainer keeps a forward with labels

    assert len(seen) == 2
    (free_inputs, free_outputs), (fused_inputs, fused_outputs) = seen
    assert "labels" not in free_inputs and free_outputs.logits is not None
    with pytest.raises(UnobservableLossError, match="has_fused_lm_head"):
        per_example_from_forward(free_inputs, free_outputs, num_examples=4)
    loss_sum, token_count = per_example_from_forward(fused_inputs, fused_outputs, num_examples=4)
    for r, ids in enumerate(example_ids(fused_inputs)):
        want_mean, want_count = reference[ids]
        assert int(token_count[r]) == want_count
        assert abs(float(loss_sum[r] / token_count[r]) - want_mean) < ATOL


@ignore_gc_deprecation
def test_sft_trainer_bfd_packing_is_detected():
    model, rows = tiny_llama(seed=4), tokenized_rows()
    args, seen = run_sft(model, rows, packing=True, max_length=16)
    with pytest.raises(UnobservableLossError, match="Set `packing=False`"):
        check_loss_observable(args)
    inputs, outputs = seen[0]
    num_rows = inputs["cu_seq_lens_q"].numel() - 1
    assert num_rows > 4  # four packed rows hold more than four documents
    with pytest.raises(ValueError, match="packing=False"):
        per_example_from_forward(inputs, outputs, num_examples=4)


def run_trainer(model, rows, **config):
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        max_steps=1,
        per_device_train_batch_size=4,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        **config,
    )
    tokenizer = word_level_tokenizer()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    seen, handle = record_forwards(model)
    try:
        trainer.train()
    finally:
        handle.remove()
    return args, seen


def test_trainer_forward_reproduces_its_loss():
    model, rows = tiny_llama(seed=5), tokenized_rows()
    reference = reference_losses(model, rows)
    _, seen = run_trainer(model, rows)
    assert len(seen) == 1
    inputs, outputs = seen[0]
    num_items = inputs["num_items_in_batch"]  # transformers 5 passes it to the model
    loss_sum, token_count = per_example_from_forward(inputs, outputs, num_examples=4)
    assert int(token_count.sum()) == int(num_items)
    torch.testing.assert_close(loss_sum.sum() / num_items, outputs.loss, atol=ATOL, rtol=0)
    for r, ids in enumerate(example_ids(inputs)):
        want_mean, want_count = reference[ids]
        assert int(token_count[r]) == want_count
        assert abs(float(loss_sum[r] / token_count[r]) - want_mean) < ATOL


def test_trainer_label_smoothing_hides_labels():
    model, rows = tiny_llama(seed=6), tokenized_rows()
    args, seen = run_trainer(model, rows, label_smoothing_factor=0.1)
    with pytest.raises(UnobservableLossError, match="label_smoothing_factor=0.0"):
        check_loss_observable(args)
    inputs, outputs = seen[0]
    assert "labels" not in inputs
    with pytest.raises(UnobservableLossError, match="label_smoothing_factor=0.0"):
        per_example_from_forward(inputs, outputs, num_examples=4)
