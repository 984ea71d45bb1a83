"""A tour of the four samplers in a custom PyTorch loop (no Trainer needed).

Trains a small regression model on synthetic data whose difficulty is known (the noise level),
with each of the four orderings, feeding per-example losses to the ZPD sampler, and prints how
each ordering moved through the difficulty range. Runs in a few seconds on a CPU.

    python examples/sampler_tour.py
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from zpd_curriculum import (
    EasyToHardSampler,
    HardToEasySampler,
    RandomSampler,
    ZPDAdaptiveSampler,
    effective_sample_size,
)

N, BATCH, EPOCHS, SEED = 2048, 32, 3, 0


def make_data(seed: int) -> tuple[TensorDataset, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 8, generator=g)
    noise = torch.linspace(0.0, 2.0, N)  # example i is harder the larger i is
    y = x @ torch.ones(8) + noise * torch.randn(N, generator=g)
    return TensorDataset(torch.arange(N), x, y), noise.numpy()


def train(sampler, data: TensorDataset, difficulty: np.ndarray) -> dict[str, float]:
    torch.manual_seed(SEED)
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = DataLoader(data, batch_size=BATCH, sampler=sampler)
    first_epoch_difficulty = []
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for index, x, y in loader:
            per_example = (model(x).squeeze(-1) - y) ** 2
            per_example.mean().backward()
            opt.step()
            opt.zero_grad()
            if isinstance(sampler, ZPDAdaptiveSampler):
                sampler.update(index.numpy(), per_example.detach().numpy())
            if epoch == 0:
                first_epoch_difficulty.extend(difficulty[index.numpy()])
    d = np.asarray(first_epoch_difficulty)
    with torch.no_grad():
        _, x, y = data.tensors
        clean = torch.nn.functional.mse_loss(model(x[: N // 4]).squeeze(-1), y[: N // 4])
    return {
        "noise, first quarter of epoch 0": float(d[: len(d) // 4].mean()),
        "noise, last quarter of epoch 0": float(d[-len(d) // 4 :].mean()),
        "final MSE on the easiest quarter": float(clean),
    }


def main() -> None:
    data, difficulty = make_data(SEED)
    samplers = {
        "Random": RandomSampler(data, seed=SEED),
        "EasyToHard": EasyToHardSampler(data, difficulty=difficulty, seed=SEED, refresh_every=256),
        "HardToEasy": HardToEasySampler(data, difficulty=difficulty, seed=SEED, refresh_every=256),
        "ZPDAdaptive": ZPDAdaptiveSampler(data, seed=SEED, refresh_every=256),
    }
    print(f"{'sampler':<12} {'noise Q1':>9} {'noise Q4':>9} {'MSE easy':>9}")
    for name, sampler in samplers.items():
        stats = train(sampler, data, difficulty)
        print(f"{name:<12} " + " ".join(f"{v:9.3f}" for v in stats.values()))
    zpd = samplers["ZPDAdaptive"]
    print(
        f"\nZPDAdaptive after training: competence {zpd.competence:.3f}, "
        f"{zpd.num_observed}/{N} examples observed, "
        f"effective sample size {effective_sample_size(zpd.probabilities()):.0f} of {N}"
    )


if __name__ == "__main__":
    main()
