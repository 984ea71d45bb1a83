"""The callbacks on an unmodified Trainer: the model sees the curriculum, losses land exactly.

Every example's tokens encode its dataset index, so each test decodes what the model actually
trained on and compares it with the sampler's stream and with the loss table.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from trainer_utils import Recorder, index_dataset, make_trainer, tiny_llama
from zpd_curriculum import (
    EasyToHardCallback,
    HardToEasyCallback,
    RandomCallback,
    UnobservableLossError,
    ZPDAdaptiveCallback,
)
from zpd_curriculum._callbacks import STATE_FILE

pytestmark = pytest.mark.filterwarnings(
    # torch's DataLoader workers fork a process that already runs threads (the test runner's)
    "ignore:This process .* is multi-threaded, use of fork.*:DeprecationWarning",
)

CALLBACKS = {
    "random": lambda **kw: RandomCallback(**kw),
    "easy_to_hard": lambda **kw: EasyToHardCallback(difficulty="length", **kw),
    "hard_to_easy": lambda **kw: HardToEasyCallback(difficulty="length", **kw),
    "zpd_adaptive": lambda **kw: ZPDAdaptiveCallback(warmup=0.1, **kw),
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add contention on a shared machine
    yield
    torch.set_num_threads(threads)


class EpochStreams(TrainerCallback):
    """Captures each epoch's planned stream from the curriculum callback at epoch end."""

    def __init__(self, curriculum):
        self.curriculum = curriculum
        self.streams: list[list[int]] = []

    def on_epoch_end(self, args, state, control, **kwargs):
        sampler = self.curriculum.sampler
        self.streams.append(sampler.indices_at(0, len(sampler)).tolist())


def expected_ema(indices, losses, momentum):
    table: dict[int, float] = {}
    for i, v in zip(indices, losses, strict=True):
        v = np.float32(v)
        beta = np.float32(momentum)
        table[i] = v if i not in table else beta * table[i] + (1 - beta) * v
    return table


def train_and_record(tmp_path, name, *, callback_kw=None, **overrides):
    callback = CALLBACKS[name](**(callback_kw or {}))
    streams = EpochStreams(callback)
    model = overrides.pop("model", None) or tiny_llama(overrides.get("seed", 0))
    recorder = Recorder(model)
    trainer = make_trainer(tmp_path, [streams, callback], model=model, **overrides)
    trainer.train()
    return trainer, callback, streams, recorder


SETUPS = {
    "plain": {},
    "grad_accumulation": {"gradient_accumulation_steps": 3},
    "workers": {"dataloader_num_workers": 2, "gradient_accumulation_steps": 2},
    "drop_last": {"dataloader_drop_last": True, "n": 50},
    "eval_during_training": {"eval_strategy": "steps", "eval_steps": 4},
    "gradient_checkpointing": {"activation_checkpointing": True},
}


@pytest.mark.parametrize("setup", sorted(SETUPS))
@pytest.mark.parametrize("name", sorted(CALLBACKS))
def test_the_model_trains_on_the_sampler_stream(tmp_path, name, setup):
    overrides = dict(SETUPS[setup])
    trainer, callback, streams, recorder = train_and_record(tmp_path, name, **overrides)
    n = overrides.get("n", 48)
    per_epoch = (n // 4) * 4 if overrides.get("dataloader_drop_last") else n
    trained = recorder.indices
    assert len(trained) == 2 * per_epoch
    for epoch, stream in enumerate(streams.streams):
        assert trained[epoch * per_epoch : (epoch + 1) * per_epoch] == stream[:per_epoch]
    # the steps per epoch are the stock Trainer's
    stock = make_trainer(tmp_path / "stock", [], **overrides)
    stock.train()
    assert trainer.state.global_step == stock.state.global_step


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_losses_are_credited_to_the_right_examples(tmp_path, setup):
    trainer, callback, _, recorder = train_and_record(
        tmp_path, "zpd_adaptive", callback_kw={"loss_momentum": 0.5}, **SETUPS[setup]
    )
    expected = expected_ema(recorder.indices, recorder.losses, 0.5)
    table = callback.sampler.example_losses
    got = np.array([table[i] for i in expected])
    np.testing.assert_allclose(got, list(expected.values()), rtol=2e-5)
    counts = np.bincount(recorder.indices, minlength=len(table))
    np.testing.assert_array_equal(callback.sampler.observation_counts, counts)
    assert callback.sampler.num_updates == trainer.state.global_step


@pytest.mark.parametrize("setup", ["plain", "grad_accumulation", "drop_last"])
def test_losses_committed_in_batches_equal_committing_every_step(tmp_path, monkeypatch, setup):
    """Losses wait on the device for several steps; the sampler ends exactly as if they had not."""
    import zpd_curriculum._callbacks as module

    kw = {"callback_kw": {"refresh_every": 16}, "logging_steps": 7, **SETUPS[setup]}
    transfers = []  # examples per device-to-host transfer of losses
    gather = module._gather_ranks
    monkeypatch.setattr(
        module, "_gather_ranks", lambda t, world: transfers.append(t.shape[1]) or gather(t, world)
    )
    batched, batched_cb, _, batched_rec = train_and_record(tmp_path / "a", "zpd_adaptive", **kw)
    batched_transfers, transfers[:] = len(transfers), []
    monkeypatch.setattr(module, "_MAX_PENDING_STEPS", 1)
    every, every_cb, _, every_rec = train_and_record(tmp_path / "b", "zpd_adaptive", **kw)
    assert len(transfers) == every.state.global_step > 2 * batched_transfers
    assert batched_rec.indices == every_rec.indices
    state, reference = batched_cb.sampler.state_dict(), every_cb.sampler.state_dict()
    assert state.keys() == reference.keys()
    for key, value in reference.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)


# peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` alias
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_peft_lora_model(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_llama(0), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_alpha=8)
    )
    trainer, callback, streams, recorder = train_and_record(
        tmp_path, "zpd_adaptive", model=model, callback_kw={"loss_momentum": 0.0}
    )
    assert recorder.indices[:48] == streams.streams[0]
    expected = expected_ema(recorder.indices, recorder.losses, 0.0)
    table = callback.sampler.example_losses
    np.testing.assert_allclose([table[i] for i in expected], list(expected.values()), rtol=2e-5)


def test_same_seed_same_stream_with_workers(tmp_path):
    runs = [
        train_and_record(tmp_path / str(k), "zpd_adaptive", dataloader_num_workers=2)[3].indices
        for k in range(2)
    ]
    assert runs[0] == runs[1]
    other = train_and_record(tmp_path / "other", "zpd_adaptive", seed=1)[3].indices
    assert other != runs[0]


@pytest.mark.parametrize("name", sorted(CALLBACKS))
@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_is_exact(tmp_path, name, workers):
    kw = {"save_strategy": "steps", "save_steps": 5, "dataloader_num_workers": workers,
          "gradient_accumulation_steps": 2}  # fmt: skip
    full, full_cb, _, full_rec = train_and_record(tmp_path / "full", name, **kw)
    checkpoint = tmp_path / "full" / "checkpoint-5"  # 6 optimizer steps per epoch: mid-epoch 0
    assert (checkpoint / STATE_FILE).is_file()

    callback = CALLBACKS[name]()
    model = tiny_llama(0)
    recorder = Recorder(model)
    resumed = make_trainer(tmp_path / "resumed", [callback], model=model, **kw)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    micro_done = 5 * 2 * 4  # steps x accumulation x batch
    assert recorder.indices == full_rec.indices[micro_done:]
    full_state, state = full_cb.sampler.state_dict(), callback.sampler.state_dict()
    for key in ("planned", "ema", "count", "last", "history", "used"):
        if key in state:
            np.testing.assert_array_equal(state[key], full_state[key], err_msg=key)
    if name == "zpd_adaptive":
        assert state["competence"] == full_state["competence"]


@pytest.mark.parametrize("name", ["easy_to_hard", "zpd_adaptive"])
def test_resume_keeps_the_difficulty_scored_by_the_initial_model(tmp_path, name):
    """difficulty="loss" scores the initial model; a resumed run must not rescore it."""
    make = {
        "easy_to_hard": lambda: EasyToHardCallback(),  # default difficulty="loss"
        "zpd_adaptive": lambda: ZPDAdaptiveCallback(difficulty="loss", warmup=0.1),
    }[name]
    kw = {"save_strategy": "steps", "save_steps": 8}
    full_cb = make()
    model = tiny_llama(0)
    full_rec = Recorder(model)
    make_trainer(tmp_path / "full", [full_cb], model=model, **kw).train()

    callback = make()
    model = tiny_llama(0)
    recorder = Recorder(model)
    resumed = make_trainer(tmp_path / "resumed", [callback], model=model, **kw)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-8"))
    np.testing.assert_array_equal(callback.difficulty, full_cb.difficulty)
    assert recorder.indices == full_rec.indices[8 * 4 :]  # into epoch 1: a freshly planned epoch


def test_resume_from_another_dataset_is_refused(tmp_path):
    kw = {"save_strategy": "steps", "save_steps": 5}
    train_and_record(tmp_path / "a", "zpd_adaptive", **kw)
    trainer = make_trainer(tmp_path / "b", [ZPDAdaptiveCallback()], n=40, **kw)
    with pytest.raises(ValueError, match="another dataset"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-5"))


def test_resume_without_state_file_is_refused_unless_asked(tmp_path):
    kw = {"save_strategy": "steps", "save_steps": 5}
    train_and_record(tmp_path / "a", "random", **kw)
    os.remove(tmp_path / "a" / "checkpoint-5" / STATE_FILE)
    trainer = make_trainer(tmp_path / "b", [RandomCallback()], **kw)
    with pytest.raises(FileNotFoundError, match="strict_resume=False"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-5"))
    trainer = make_trainer(tmp_path / "c", [RandomCallback(strict_resume=False)], **kw)
    trainer.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-5"))


def test_a_second_train_call_does_not_hook_twice(tmp_path):
    callback = ZPDAdaptiveCallback()
    model = tiny_llama(0)
    trainer = make_trainer(tmp_path, [callback], model=model, max_steps=3)
    trainer.train()
    trainer.train()
    ours = [h for h in model._forward_hooks.values() if getattr(h, "__self__", None) is callback]
    assert ours == []  # removed at train end
    assert callback.sampler.num_updates == 3  # a fresh sampler for the second run


def test_label_smoothing_fails_fast_and_names_the_fix(tmp_path):
    trainer = make_trainer(tmp_path, [ZPDAdaptiveCallback()], label_smoothing_factor=0.1)
    with pytest.raises(UnobservableLossError, match="label_smoothing_factor"):
        trainer.train()


def test_strategies_without_losses_work_under_label_smoothing(tmp_path):
    trainer = make_trainer(tmp_path, [RandomCallback()], label_smoothing_factor=0.1, max_steps=3)
    trainer.train()
    assert trainer.state.global_step == 3


def test_iterable_dataset_is_refused_with_a_clear_error(tmp_path):
    from datasets import IterableDataset

    rows = index_dataset(16)
    stream = IterableDataset.from_generator(lambda: iter(rows))
    trainer = make_trainer(tmp_path, [RandomCallback()], max_steps=2)
    trainer.train_dataset = stream
    with pytest.raises(TypeError, match="IterableDataset"):
        trainer.train()


def test_self_check_stops_training_on_misattribution(tmp_path):
    callback = ZPDAdaptiveCallback(check_every=1)

    class Sabotage(TrainerCallback):
        def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
            # something replaces the order behind the curriculum's back
            train_dataloader.batch_sampler.sampler = list(range(47, -1, -1))

    trainer = make_trainer(tmp_path, [callback, Sabotage()])
    with pytest.raises(RuntimeError, match="self-check failed"):
        trainer.train()


class LogSpy(TrainerCallback):
    """Stands for a report_to integration: registered before the curriculum callback."""

    def __init__(self):
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


@pytest.mark.parametrize("name", sorted(CALLBACKS))
def test_metrics_reach_integrations_and_log_history(tmp_path, name):
    spy = LogSpy()
    callback = CALLBACKS[name]()
    trainer = make_trainer(tmp_path, [spy, callback], logging_steps=4)
    trainer.train()
    train_logs = [log for log in spy.logs if "loss" in log]
    assert train_logs
    keys = {"curriculum/competence", "curriculum/coverage", "curriculum/effective_sample_size",
            "curriculum/callback_ms_per_step"}  # fmt: skip
    for log in train_logs:
        assert keys <= log.keys()
    history = [h for h in trainer.state.log_history if "loss" in h]
    assert all(keys <= h.keys() for h in history)
    if name == "zpd_adaptive":  # weighted draws repeat examples: coverage is what was observed
        observed = callback.sampler.num_observed / 48
        assert train_logs[-1]["curriculum/coverage"] == pytest.approx(observed)
    else:  # two epochs of permutation-like draws cover everything
        assert train_logs[-1]["curriculum/coverage"] == pytest.approx(1.0)
    if name != "random":
        assert "curriculum/difficulty_percentile" in train_logs[0]


def test_easy_to_hard_metrics_show_rising_difficulty(tmp_path):
    spy = LogSpy()
    callback = EasyToHardCallback(difficulty="length", start=0.2, full_at=0.8)
    trainer = make_trainer(tmp_path, [spy, callback], logging_steps=3, num_train_epochs=1)
    trainer.train()
    pct = [log["curriculum/difficulty_percentile"] for log in spy.logs if "loss" in log]
    assert pct[0] < 0.35 and pct[-1] > pct[0]
    competence = [log["curriculum/competence"] for log in spy.logs if "loss" in log]
    assert competence == sorted(competence)


def test_loss_difficulty_is_scored_once_and_cached(tmp_path, monkeypatch):
    import zpd_curriculum._callbacks as callbacks

    calls = []
    real = callbacks.score_examples
    monkeypatch.setattr(
        callbacks, "score_examples", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    for _run in range(2):
        callback = EasyToHardCallback()  # difficulty="loss"
        trainer = make_trainer(tmp_path, [callback], max_steps=2)
        trainer.train()
        assert callback.difficulty.shape == (48,)
        assert np.isfinite(callback.difficulty).all()
    assert len(calls) == 1  # the second run (same data, same initial model) used the cache
    assert any((tmp_path / "zpd_curriculum_cache").iterdir())
    # hard examples first is the same scores, reversed
    h2e = HardToEasyCallback()
    make_trainer(tmp_path, [h2e], max_steps=1).train()
    np.testing.assert_array_equal(h2e.difficulty, callback.difficulty)


def test_difficulty_sources(tmp_path):
    values = np.arange(48.0)[::-1]
    callback = EasyToHardCallback(difficulty=values, pacing="sorted")
    model = tiny_llama(0)
    recorder = Recorder(model)
    make_trainer(tmp_path, [callback], model=model, num_train_epochs=1).train()
    assert recorder.indices == list(range(47, -1, -1))
    with pytest.raises(ValueError, match="one number per row"):
        make_trainer(tmp_path, [EasyToHardCallback(difficulty=values[:5])]).train()
    with pytest.raises(ValueError, match="neither 'loss', 'length' nor a column"):
        make_trainer(tmp_path, [EasyToHardCallback(difficulty="nope")]).train()


def test_difficulty_is_required_for_easy_to_hard():
    with pytest.raises(ValueError, match="needs a difficulty"):
        EasyToHardCallback(difficulty=None)


def test_group_by_length_replacement_is_warned(tmp_path, caplog):
    trainer = make_trainer(
        tmp_path, [RandomCallback()], train_sampling_strategy="group_by_length", max_steps=1
    )
    with caplog.at_level("WARNING", logger="zpd_curriculum._callbacks"):
        trainer.train()
    assert "group_by_length" in caplog.text


def test_batch_rebalance_strategy_is_refused(tmp_path):
    trainer = make_trainer(
        tmp_path, [RandomCallback()], train_sampling_strategy="batch_rebalance", max_steps=1
    )
    with pytest.raises(ValueError, match="train_sampling_strategy='random'"):
        trainer.train()


def test_loss_statistics_for_a_loss_free_strategy(tmp_path):
    callback = RandomCallback(track_losses=True)
    model = tiny_llama(0)
    recorder = Recorder(model)
    make_trainer(tmp_path, [callback], model=model).train()
    stats = callback.loss_statistics()
    per_index: dict[int, list[float]] = {}
    for i, v in zip(recorder.indices, recorder.losses, strict=True):
        per_index.setdefault(i, []).append(v)
    for i, values in per_index.items():
        assert stats["count"][i] == len(values)
        assert stats["mean"][i] == pytest.approx(np.mean(values), rel=1e-5)
        assert stats["std"][i] == pytest.approx(np.std(values), rel=1e-4, abs=1e-6)
    with pytest.raises(RuntimeError, match="track_losses=True"):
        RandomCallback().loss_statistics()


def test_compute_loss_func_fails_fast_and_names_the_setting(tmp_path):
    from transformers import Trainer

    reference = make_trainer(tmp_path, [ZPDAdaptiveCallback()])

    def loss_func(outputs, labels, num_items_in_batch=None):
        logits = outputs.logits[:, :-1].flatten(0, 1)
        return torch.nn.functional.cross_entropy(logits, labels[:, 1:].flatten())

    trainer = Trainer(
        model=reference.model, args=reference.args, train_dataset=reference.train_dataset,
        data_collator=reference.data_collator, callbacks=[ZPDAdaptiveCallback()],
        compute_loss_func=loss_func,
    )  # fmt: skip
    with pytest.raises(UnobservableLossError, match="compute_loss_func"):
        trainer.train()
