"""Tests for zpd_curriculum._scoring: scoring a dataset by per-example loss, and its cache."""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from zpd_curriculum import _scoring
from zpd_curriculum._scoring import (
    PaddingCollator,
    dataset_fingerprint,
    load_or_score,
    model_fingerprint,
    score_examples,
)

VOCAB = 64


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
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    return tiny_llama()


def make_rows(n=11, seed=0):
    """Variable lengths; some rows bring labels with a masked prompt, some an attention_mask."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = int(torch.randint(1, 14, (1,), generator=g))
        ids = torch.randint(1, VOCAB, (length,), generator=g).tolist()
        row = {"input_ids": ids}
        if i % 3 == 1:
            row["labels"] = [-100] * min(2, length) + ids[2:]
        if i % 4 == 2:
            row["attention_mask"] = [1] * length
        rows.append(row)
    rows.append({"input_ids": [5]})  # nothing to predict
    rows.append({"input_ids": [5, 6, 7], "labels": [-100, -100, -100]})  # nothing labelled
    return rows


def naive_scores(model, rows):
    """One example at a time, with the model's own loss."""
    out = []
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor([row.get("labels", row["input_ids"])])
            if not (labels[:, 1:] != -100).any():
                out.append(math.nan)
                continue
            out.append(float(model(input_ids=ids, labels=labels).loss))
    return np.array(out, dtype=np.float32)


@pytest.fixture(scope="module")
def rows_and_reference(model):
    rows = make_rows()
    return rows, naive_scores(model, rows)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_scores_equal_naive_loop_in_dataset_order(model, rows_and_reference, batch_size):
    rows, reference = rows_and_reference
    scores = score_examples(model, rows, batch_size=batch_size, show_progress=False)
    assert scores.dtype == np.float32 and scores.shape == (len(rows),)
    assert np.isnan(scores[-2:]).all()
    np.testing.assert_allclose(scores, reference, atol=1e-5, rtol=0, equal_nan=True)


def test_hf_dataset_scores_like_list(model, rows_and_reference):
    from datasets import Dataset

    rows, reference = rows_and_reference
    full = [
        {
            "input_ids": row["input_ids"],
            "labels": row.get("labels", row["input_ids"]),
            "attention_mask": row.get("attention_mask", [1] * len(row["input_ids"])),
        }
        for row in rows
    ]
    dataset = Dataset.from_list(full).with_format("torch")  # rows of tensors
    scores = score_examples(model, dataset, batch_size=4, show_progress=False)
    np.testing.assert_allclose(scores, reference, atol=1e-5, rtol=0, equal_nan=True)


@settings(deadline=None, max_examples=6)
@given(
    lengths=st.lists(st.integers(2, 10), min_size=1, max_size=9),
    batch_size=st.integers(1, 5),
)
def test_order_is_restored_whatever_the_lengths(model, lengths, batch_size):
    rows = [
        {"input_ids": [(7 * i + j) % (VOCAB - 1) + 1 for j in range(n)]}
        for i, n in enumerate(lengths)
    ]
    scores = score_examples(model, rows, batch_size=batch_size, show_progress=False)
    np.testing.assert_allclose(scores, naive_scores(model, rows), atol=1e-5, rtol=0)


def test_batches_are_length_sorted(model, rows_and_reference, monkeypatch):
    rows, _ = rows_and_reference
    widths = []
    collate = PaddingCollator(0)

    def spy(examples):
        widths.append([len(example["input_ids"]) for example in examples])
        return collate(examples)

    score_examples(model, rows, batch_size=4, data_collator=spy, show_progress=False)
    flat = [n for batch in widths for n in batch]
    assert flat == sorted(flat, reverse=True)
    assert sorted(flat) == sorted(len(row["input_ids"]) for row in rows)


def test_eval_mode_no_grad_and_modes_restored(rows_and_reference):
    rows, _ = rows_and_reference
    model = tiny_llama()
    model.train()
    model.model.layers[0].eval()  # a mixed state must come back as it was
    before = {name: module.training for name, module in model.named_modules()}
    during = []

    def hook(module, args, output):
        during.append((module.training, torch.is_grad_enabled(), output.logits.requires_grad))

    handle = model.register_forward_hook(hook)
    try:
        score_examples(model, rows, batch_size=5, show_progress=False)
    finally:
        handle.remove()
    assert during and all(state == (False, False, False) for state in during)
    assert {name: module.training for name, module in model.named_modules()} == before
    assert all(param.grad is None for param in model.parameters())


def test_modes_restored_when_the_forward_fails():
    model = tiny_llama()
    model.train()
    with pytest.raises(IndexError):  # token id out of the vocabulary
        score_examples(model, [{"input_ids": [1, VOCAB + 5]}], show_progress=False)
    assert all(module.training for module in model.modules())


def test_pad_token_id_does_not_change_scores(rows_and_reference):
    rows, reference = rows_and_reference
    model = tiny_llama()
    model.config.pad_token_id = 9
    seen = []
    collate = PaddingCollator(9)

    def spy(examples):
        batch = collate(examples)
        seen.append(batch)
        return batch

    default = score_examples(model, rows, batch_size=4, show_progress=False)
    np.testing.assert_allclose(default, reference, atol=1e-5, rtol=0, equal_nan=True)
    score_examples(model, rows, batch_size=4, data_collator=spy, show_progress=False)
    assert any((batch["input_ids"][batch["attention_mask"] == 0] == 9).all() for batch in seen)


def test_padding_collator_pads_and_checks_lengths():
    batch = PaddingCollator(pad_token_id=3)(
        [
            {"input_ids": [4, 5], "labels": [-100, 5], "attention_mask": [1, 1]},
            {"input_ids": torch.tensor([6, 7, 8])},
        ]
    )
    assert batch["input_ids"].tolist() == [[4, 5, 3], [6, 7, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 5, -100], [6, 7, 8]]
    with pytest.raises(ValueError, match="same length"):
        PaddingCollator()([{"input_ids": [1, 2], "labels": [1]}])


def test_trl_patched_model_scores_through_fused_head(rows_and_reference):
    from trl.trainer.utils import add_fused_lm_head

    rows, reference = rows_and_reference
    patched = tiny_llama()
    add_fused_lm_head(patched, outputs=("log_probs",))
    calls = []
    handle = patched.register_forward_hook(
        lambda module, args, kwargs, output: calls.append(kwargs.get("fused_lm_head")),
        with_kwargs=True,
    )
    try:
        scores = score_examples(patched, rows, batch_size=4, show_progress=False)
    finally:
        handle.remove()
    assert calls and all(calls)
    np.testing.assert_allclose(scores, reference, atol=1e-5, rtol=0, equal_nan=True)


def test_padding_free_collator(model, rows_and_reference):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    rows, reference = rows_and_reference
    collate = DataCollatorForLanguageModeling(
        pad_token_id=0, padding_free=True, pad_to_multiple_of=8
    )
    scores = score_examples(model, rows, batch_size=4, data_collator=collate, show_progress=False)
    np.testing.assert_allclose(scores, reference, atol=1e-5, rtol=0, equal_nan=True)


def test_progress_bar_and_empty_dataset(model, capsys):
    scores = score_examples(model, [{"input_ids": [1, 2, 3]}], desc="difficulty")
    assert "difficulty" in capsys.readouterr().err
    assert scores.shape == (1,) and np.isfinite(scores).all()
    assert score_examples(model, [], show_progress=False).shape == (0,)


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True])
def test_bad_batch_size(model, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        score_examples(model, [{"input_ids": [1, 2]}], batch_size=batch_size)


def test_rows_without_input_ids(model):
    with pytest.raises(TypeError, match="Tokenize the dataset first"):
        score_examples(model, [{"text": "hello"}], show_progress=False)
    with pytest.raises(TypeError, match="expected a dict"):
        score_examples(model, [[1, 2, 3]], show_progress=False)


# ---------------------------------------------------------------------------------------------
# Fingerprints and the cache


def test_dataset_fingerprint():
    rows = make_rows(seed=1)
    assert dataset_fingerprint(rows) == dataset_fingerprint(copy.deepcopy(rows))
    changed = copy.deepcopy(rows)
    changed[3]["input_ids"][0] += 1
    assert dataset_fingerprint(changed) != dataset_fingerprint(rows)
    relabelled = copy.deepcopy(rows)
    relabelled[0]["labels"] = [-100] * len(relabelled[0]["input_ids"])
    assert dataset_fingerprint(relabelled) != dataset_fingerprint(rows)
    assert dataset_fingerprint(rows[:-1]) != dataset_fingerprint(rows)


def test_dataset_fingerprint_uses_hf_fingerprint():
    from datasets import Dataset

    dataset = Dataset.from_list([{"input_ids": [1, 2]}, {"input_ids": [3]}])
    assert dataset_fingerprint(dataset) == dataset._fingerprint
    shuffled = dataset.shuffle(seed=0)
    assert dataset_fingerprint(shuffled) != dataset_fingerprint(dataset)


def test_model_fingerprint():
    a, b = tiny_llama(seed=0), tiny_llama(seed=1)
    fp = model_fingerprint(a)
    assert len(fp) == 16 and fp == model_fingerprint(copy.deepcopy(a))
    assert model_fingerprint(b) != fp  # same config, other weights
    assert model_fingerprint(b)[:8] == fp[:8]  # the config half agrees
    a.config.name_or_path = "/somewhere/else"
    assert model_fingerprint(a) == fp  # paths do not matter
    with torch.no_grad():
        a.lm_head.weight[0, 0] += 1.0  # the last parameter is sampled
    assert model_fingerprint(a) != fp


# peft 0.21 reads `is_gradient_checkpointing`, which transformers 5 deprecates; not ours.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_model_fingerprint_sees_trainable_adapters():
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(tiny_llama(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    fp = model_fingerprint(peft_model)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    with torch.no_grad():
        trainable[0].add_(1.0)  # a LoRA A matrix of the first layer
    assert model_fingerprint(peft_model) != fp


def test_load_or_score_round_trip(model, rows_and_reference, tmp_path, monkeypatch, caplog):
    rows, reference = rows_and_reference
    cache = tmp_path / "cache"
    first = load_or_score(model, rows, cache, batch_size=4, show_progress=False)
    np.testing.assert_allclose(first, reference, atol=1e-5, rtol=0, equal_nan=True)
    path = cache / f"zpd_scores-{dataset_fingerprint(rows)}-{model_fingerprint(model)}.npy"
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary file left behind

    def fail(*args, **kwargs):
        raise AssertionError("scored again despite a cache hit")

    monkeypatch.setattr(_scoring, "score_examples", fail)
    again = load_or_score(model, rows, cache, show_progress=False)
    np.testing.assert_array_equal(again, first)
    assert again.dtype == np.float32

    # A file that does not fit the dataset is rescored and replaced.
    monkeypatch.undo()
    np.save(path, np.zeros(3, dtype=np.float32))
    with caplog.at_level(logging.WARNING, logger="zpd_curriculum._scoring"):
        rescored = load_or_score(model, rows, cache, batch_size=4, show_progress=False)
    assert "Ignoring cached scores" in caplog.text
    np.testing.assert_array_equal(rescored, first)
    assert np.load(path).shape == (len(rows),)


def test_load_or_score_leaves_no_partial_file(model, tmp_path, monkeypatch):
    def broken_save(file, array):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(_scoring.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        load_or_score(model, [{"input_ids": [1, 2, 3]}], tmp_path, show_progress=False)
    assert list(tmp_path.iterdir()) == []
