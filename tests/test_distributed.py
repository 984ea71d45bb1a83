"""Two CPU processes (torchrun, gloo): one global curriculum, identical tables, exact resume."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.distributed

WORKER = Path(__file__).parent / "distributed" / "ddp_worker.py"
N, WORLD, BATCH, ACCUMULATION = 61, 2, 4, 2


_PORTS = itertools.count(29500 + os.getpid() % 1000 * 8)


def torchrun(out: Path, strategy: str, resume_from: str | None = None) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
           "--master_port", str(next(_PORTS)), str(WORKER),
           "--strategy", strategy, "--out", str(out), "--num-examples", str(N)]  # fmt: skip
    if resume_from:
        cmd += ["--resume-from", resume_from]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    return torchrun(tmp_path_factory.mktemp("stock"), "none")


@pytest.mark.parametrize("strategy", ["zpd_adaptive", "easy_to_hard"])
def test_two_processes_share_one_curriculum_and_resume_exactly(tmp_path, stock, strategy):
    ranks = torchrun(tmp_path / "full", strategy)
    per_rank = math.ceil(N / WORLD)  # 31: the stream of 61 is padded by one wrap-around
    assert all(r["len"] == per_rank for r in ranks)
    # the same step count as the stock Trainer
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == stock[0]["global_step"]
    # one global plan: identical state (tables, plans) on both ranks
    assert ranks[0]["state_hash"] == ranks[1]["state_hash"]
    assert ranks[0]["plans"] == ranks[1]["plans"]
    assert ranks[0]["difficulty_hash"] == ranks[1]["difficulty_hash"]
    if strategy == "zpd_adaptive":
        assert ranks[0]["table_hash"] == ranks[1]["table_hash"]
        assert ranks[0]["num_updates"] == ranks[0]["global_step"]
    for epoch in range(2):
        shares = []
        for r in ranks:
            lo, hi = r["epoch_marks"][epoch], r["epoch_marks"][epoch + 1]
            shares.append(r["trained"][lo:hi])
        assert len(shares[0]) == len(shares[1]) == per_rank
        # interleaved, the shares are one global stream of N positions plus one padding position
        stream = [shares[p % WORLD][p // WORLD] for p in range(WORLD * per_rank)]
        assert stream[N] == stream[0]  # the documented wrap-around padding
        if strategy == "easy_to_hard":  # exactly what one process would have drawn
            assert stream[:N] == ranks[0]["single_process"][epoch]
    # resume from a mid-epoch checkpoint on both ranks: identical streams and final tables
    checkpoint = tmp_path / "full" / "checkpoint-3"
    assert (checkpoint / "zpd_curriculum_state.npz").is_file()
    resumed = torchrun(tmp_path / "resumed", strategy, resume_from=str(checkpoint))
    done = 3 * ACCUMULATION * BATCH
    for full_rank, resumed_rank in zip(ranks, resumed, strict=True):
        assert resumed_rank["trained"] == full_rank["trained"][done:]
        assert resumed_rank["state_hash"] == full_rank["state_hash"]
        if strategy == "zpd_adaptive":
            assert resumed_rank["table_hash"] == full_rank["table_hash"]
