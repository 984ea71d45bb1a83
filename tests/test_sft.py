"""The callbacks under TRL's SFTTrainer: tokenized and raw-text data, padding-free, PEFT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from trainer_utils import decode_index, index_row, tiny_llama
from zpd_curriculum import RandomCallback, UnobservableLossError, ZPDAdaptiveCallback
from zpd_curriculum._losses import per_example_from_forward

trl = pytest.importorskip("trl")

pytestmark = [
    # TRL's SFTConfig defaults gradient_checkpointing=True, which transformers 5 deprecates
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
    # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` alias
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

N = 32


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0-3, as in trainer_utils
    vocab = {**{t: i for i, t in enumerate(special)}, **{f"w{i}": i for i in range(4, 64)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        unk_token="<unk>",
    )


def as_text(tokens: list[int]) -> str:
    return " ".join("<s>" if t == 1 else f"w{t}" for t in tokens)


DATASETS = {
    "tokenized": lambda: Dataset.from_dict({"input_ids": [index_row(i) for i in range(N)]}),
    "raw_text": lambda: Dataset.from_dict(
        {"text": [as_text(index_row(i)) for i in range(N)]}
    ),
}


class ForwardRecorder:
    """Decodes each training forward's examples and their per-example losses."""

    def __init__(self, model):
        self.indices: list[int] = []
        self.losses: list[float] = []
        self.handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        if not (module.training and torch.is_grad_enabled()):
            return
        ids = kwargs["input_ids"]
        if "cu_seq_lens_q" in kwargs:
            cu = kwargs["cu_seq_lens_q"].tolist()
            rows = [ids[0, a:b].tolist() for a, b in zip(cu[:-1], cu[1:], strict=True)]
        else:
            mask = kwargs["attention_mask"].bool()
            rows = [ids[r][mask[r]].tolist() for r in range(ids.shape[0])]
        rows = [r for r in rows if 1 in r]  # trailing padding segments hold no example
        sums, counts = per_example_from_forward(kwargs, output, num_examples=len(rows))
        self.indices += [decode_index(r) for r in rows]
        self.losses += (sums / counts).tolist()


class Streams(TrainerCallback):
    def __init__(self, curriculum):
        self.curriculum, self.streams = curriculum, []

    def on_epoch_end(self, args, state, control, **kwargs):
        s = self.curriculum.sampler
        self.streams.append(s.indices_at(0, min(len(s), s.planned_until)).tolist())


def sft(tmp_path, callback, data="tokenized", peft=False, **config):
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=2,
        use_cpu=True, bf16=False, report_to="none", save_strategy="no", logging_steps=4,
        disable_tqdm=True, seed=0, learning_rate=1e-3, **config,
    )  # fmt: skip
    peft_config = None
    if peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    streams = Streams(callback)
    trainer = SFTTrainer(
        model=tiny_llama(0), args=args, train_dataset=DATASETS[data](),
        processing_class=tokenizer(), callbacks=[streams, callback], peft_config=peft_config,
    )  # fmt: skip
    recorder = ForwardRecorder(trainer.model)
    trainer.train()
    return trainer, streams, recorder


@pytest.mark.parametrize(
    ("data", "config", "peft"),
    [
        ("tokenized", {}, False),
        ("raw_text", {}, False),
        ("tokenized", {"padding_free": True, "max_length": None}, False),
        ("raw_text", {}, True),
    ],
    ids=["tokenized", "raw-text", "padding-free", "peft-lora"],
)
def test_sft_trains_on_the_curriculum_and_credits_losses(tmp_path, data, config, peft):
    callback = ZPDAdaptiveCallback(loss_momentum=0.0, warmup=0.1)
    trainer, streams, recorder = sft(tmp_path, callback, data=data, peft=peft, **config)
    assert len(recorder.indices) == 2 * N
    for epoch, stream in enumerate(streams.streams):
        assert recorder.indices[epoch * N : (epoch + 1) * N] == stream
    # momentum 0: the table holds each example's latest loss from the training forward
    latest = dict(zip(recorder.indices, recorder.losses, strict=True))
    table = callback.sampler.example_losses
    np.testing.assert_allclose([table[i] for i in latest], list(latest.values()), rtol=2e-5)
    assert callback.sampler.num_updates == trainer.state.global_step


def test_sft_packing_fails_fast(tmp_path):
    with pytest.raises(UnobservableLossError, match="packing=False"):
        sft(tmp_path, ZPDAdaptiveCallback(), packing=True, max_length=16)


def test_sft_packing_keeps_working_for_orders_without_losses(tmp_path):
    # with packing, rows are no longer examples; a loss-free order still applies to the rows
    trainer, _, _ = sft(tmp_path / "r", RandomCallback(check_every=0), data="tokenized",
                        packing=True, max_length=16, max_steps=2)  # fmt: skip
    assert trainer.state.global_step == 2
