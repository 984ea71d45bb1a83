"""Tiny offline Trainer setups whose examples encode their dataset index in their tokens."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

PAD, BOS, DIGIT0, FILLER0 = 0, 1, 10, 20
VOCAB = 64


def index_row(i: int) -> list[int]:
    """Tokens of example i: BOS, the digits of i, then i-dependent filler of varying length."""
    digits = [DIGIT0 + int(c) for c in f"{i:04d}"]
    filler = [FILLER0 + (i * 7 + k) % 40 for k in range(3 + i % 5)]
    return [BOS, *digits, *filler]


def decode_index(tokens: Iterable[int]) -> int:
    t = list(tokens)
    start = t.index(BOS)
    return int("".join(str(x - DIGIT0) for x in t[start + 1 : start + 5]))


def index_dataset(n: int) -> Dataset:
    rows = [index_row(i) for i in range(n)]
    return Dataset.from_dict({"input_ids": rows, "labels": rows})


def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), width), PAD)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, b in enumerate(batch):
        k = len(b["input_ids"])
        ids[r, :k] = torch.as_tensor(b["input_ids"])
        labels[r, :k] = torch.as_tensor(b["labels"])
        mask[r, :k] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def tiny_llama(seed: int = 0, hidden: int = 32) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=2,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


class Recorder:
    """Records, per training forward, the dataset indices seen and each row's token-mean loss."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.indices: list[int] = []
        self.losses: list[float] = []
        self.handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        ids, labels = kwargs["input_ids"], kwargs["labels"]
        logits = output.logits.detach().float()
        shift = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), shift, ignore_index=-100, reduction="none"
        )
        mask = shift != -100
        per_row = (nll * mask).sum(1) / mask.sum(1)
        for r in range(ids.shape[0]):
            self.indices.append(decode_index(ids[r].tolist()))
            self.losses.append(float(per_row[r]))


def make_trainer(
    tmp_path, callbacks, *, n: int = 48, seed: int = 0, model=None, **overrides: Any
) -> Trainer:
    options = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=2,
        learning_rate=1e-3, report_to=[], use_cpu=True, seed=seed, save_strategy="no",
        logging_steps=5, disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    options.update(overrides)
    return Trainer(
        model=model if model is not None else tiny_llama(seed),
        args=TrainingArguments(**options),
        train_dataset=index_dataset(n),
        eval_dataset=index_dataset(8) if options.get("eval_strategy", "no") != "no" else None,
        data_collator=collate,
        callbacks=callbacks,
    )


def stream_indices(sampler, epochs_lengths: list[int]) -> list[int]:
    """What the sampler planned, per epoch, concatenated (after training)."""
    return list(np.asarray(sampler.indices_at(0, epochs_lengths[-1])))
