"""One rank of a two-process CPU run (launched by torchrun from tests/test_distributed.py).

Trains a tiny Llama on index-encoding examples with a curriculum callback (or none) and writes
what this rank trained on, per epoch, and hashes of the sampler's state to OUT/rank{r}.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch
from transformers import TrainerCallback

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from trainer_utils import Recorder, make_trainer, tiny_llama  # noqa: E402
from zpd_curriculum import (  # noqa: E402
    EasyToHardCallback,
    EasyToHardSampler,
    ZPDAdaptiveCallback,
)

CALLBACKS = {
    "none": lambda: None,
    "zpd_adaptive": lambda: ZPDAdaptiveCallback(warmup=0.1),
    "easy_to_hard": lambda: EasyToHardCallback(),  # difficulty="loss": a split scoring pass
}


class EpochMarks(TrainerCallback):
    def __init__(self, recorder, curriculum):
        self.recorder, self.curriculum, self.marks, self.plans = recorder, curriculum, [0], []

    def on_epoch_end(self, args, state, control, **kwargs):
        self.marks.append(len(self.recorder.indices))
        if self.curriculum is not None:
            s = self.curriculum.sampler
            self.plans.append(hashlib.sha256(np.concatenate(s._blocks).tobytes()).hexdigest())


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", choices=sorted(CALLBACKS), required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-examples", type=int, default=61)
    parser.add_argument("--resume-from", default=None)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    curriculum = CALLBACKS[opts.strategy]()
    model = tiny_llama(0)
    recorder = Recorder(model)
    marks = EpochMarks(recorder, curriculum)
    callbacks = [marks] + ([curriculum] if curriculum is not None else [])
    trainer = make_trainer(
        opts.out, callbacks, model=model, n=opts.num_examples, gradient_accumulation_steps=2,
        save_strategy="steps", save_steps=3, ddp_backend="gloo", logging_steps=2,
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=opts.resume_from)
    rank = trainer.args.process_index
    result = {
        "rank": rank,
        "world_size": trainer.args.world_size,
        "global_step": trainer.state.global_step,
        "trained": recorder.indices,
        "epoch_marks": marks.marks,
        "plans": marks.plans,
    }
    if curriculum is not None:
        s = curriculum.sampler
        result["len"] = len(s)
        result["state_hash"] = digest(*(
            v for k, v in sorted(s.state_dict().items())
            if isinstance(v, np.ndarray) and k != "planned"
        ))  # fmt: skip
        result["difficulty_hash"] = (
            digest(curriculum.difficulty) if curriculum.difficulty is not None else None
        )
        if isinstance(curriculum, EasyToHardCallback):
            # what one process would draw with the same settings: the reference order
            single = EasyToHardSampler(
                s.num_examples, difficulty=s.difficulty, pacing=s.pacing, seed=s.seed,
                refresh_every=s.refresh_every, total_samples=s.total_samples,
            )  # fmt: skip
            result["single_process"] = []
            for epoch in range(2):
                single.set_epoch(epoch)
                result["single_process"].append(list(single))
        if isinstance(curriculum, ZPDAdaptiveCallback):
            result["table_hash"] = digest(s.example_losses, s.observation_counts, s.last_observed)
            result["competence"] = s.competence
            result["num_updates"] = s.num_updates
    with open(os.path.join(opts.out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    # Tear the process group down before exiting: a process that exits with gloo's threads still
    # running can abort ("terminate called without an active exception").
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
