"""Quickstart: a plain Hugging Face Trainer script plus one line, ZPDAdaptiveCallback().

Fine-tunes a tiny Llama (built from a config, nothing downloaded) on reversed multi-digit
addition and prints the curriculum metrics the callback adds to the Trainer's logs. Under a
minute on a laptop CPU.

    python examples/quickstart.py
"""

from __future__ import annotations

import tempfile

import torch
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

from zpd_curriculum import ZPDAdaptiveCallback
from zpd_curriculum.study import (
    build_char_tokenizer,
    make_addition_rows,
    make_tiny_llama,
    tokenize_example,
)


def main() -> None:
    torch.set_num_threads(1)  # a tiny model: threads only add overhead
    tokenizer = build_char_tokenizer()
    rows = make_addition_rows(480, digits=(2, 3, 4, 5), seed=0)
    train = Dataset.from_list(
        [tokenize_example(row, tokenizer, template="solar", max_length=128) for row in rows]
    )
    model = make_tiny_llama(tokenizer, hidden_size=64, num_layers=2, seed=0)

    callback = ZPDAdaptiveCallback()  # <- the one line a curriculum needs
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=tempfile.mkdtemp(prefix="zpd-quickstart-"),
            per_device_train_batch_size=16,
            num_train_epochs=2,
            learning_rate=3e-3,
            logging_steps=15,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        ),
        train_dataset=train,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True),
        callbacks=[callback],
    )
    trainer.train()

    print("\nstep  loss   competence  coverage  ESS    difficulty pct  callback ms/step")
    for log in trainer.state.log_history:
        if "loss" in log:
            print(
                f"{log['step']:>4}  {log['loss']:.3f}  {log['curriculum/competence']:.3f}"
                f"       {log['curriculum/coverage']:.2f}      "
                f"{log['curriculum/effective_sample_size']:>5.0f}  "
                f"{log.get('curriculum/difficulty_percentile', float('nan')):>6.2f}"
                f"          {log['curriculum/callback_ms_per_step']:.2f}"
            )
    sampler = callback.sampler
    print(
        f"\n{sampler.num_observed} of {sampler.num_examples} examples have a loss in the table; "
        f"competence {sampler.competence:.3f}."
    )


if __name__ == "__main__":
    main()
