"""A miner's own checkpoint: save → load restores every piece exactly; only a committed round counts."""

import json
import math
from dataclasses import dataclass

import pytest
import torch

from distrain.compression import ErrorFeedback
from distrain.config import DataConfig, InnerConfig, ModelConfig, OuterConfig
from distrain.data import PageBook, load_corpus
from distrain.models import build_model
from distrain.training import InnerTrainer, OuterOptimizer
from distrain.training import checkpoint as checkpoint_module
from distrain.training.checkpoint import MinerCheckpoint, global_tensors, load_global
from distrain.training.cluster import Cluster
from distrain.training.outer import snapshot

SMALL = ModelConfig(context=16, d_model=32, n_layers=1, n_heads=2)
DATA = DataConfig(max_corpus_mb=0.25, page_tokens=128)


@pytest.fixture(scope="module")
def book():
    return PageBook(load_corpus(DATA), DATA, seed=0, context=SMALL.context)


@dataclass
class MinerState:
    """Everything a miner checkpoints, built from scratch in this process (world size 1)."""

    cluster: Cluster
    theta: torch.nn.Module
    outer: OuterOptimizer
    feedback: ErrorFeedback
    trainer: InnerTrainer

    @classmethod
    def fresh(cls, seed: int) -> "MinerState":
        cluster = Cluster.start()
        theta = build_model(SMALL, seed)
        trainer = InnerTrainer(build_model(SMALL, seed), InnerConfig(steps=3, batch_size=2), cluster)
        return cls(cluster, theta, OuterOptimizer(theta, OuterConfig()), ErrorFeedback(0.9), trainer)

    def run_round(self, book: PageBook) -> None:
        """Train the replica, take an outer step and keep a residual, as a miner's round does."""
        base = snapshot(self.theta)
        self.trainer.start_from(self.theta)
        self.trainer.train_round(book, [0, 1], torch.Generator().manual_seed(0), math.inf)
        self.trainer.copy_into(self.theta)
        delta = self.feedback.compensate_all({n: base[n] - p for n, p in self.theta.named_parameters()})
        self.feedback.update_all({n: t.half().float() for n, t in delta.items()})  # "sent" at fp16
        self.outer.step(base, delta)


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _optimizer_tensors(trainer: InnerTrainer) -> dict[str, torch.Tensor]:
    state = trainer.optimizer.state_dict()["state"]
    return {
        f"{index}/{key}": torch.as_tensor(value) for index, s in state.items() for key, value in s.items()
    }


def test_save_then_load_restores_everything(tmp_path, book):
    saved = MinerState.fresh(seed=0)
    for _ in range(2):
        saved.run_round(book)
    checkpoint = MinerCheckpoint(tmp_path, saved.cluster)
    checkpoint.save(7, global_tensors(saved.theta, saved.outer, saved.feedback))
    checkpoint.wait()
    rng_after_save = torch.get_rng_state()

    restored = MinerState.fresh(seed=1)  # another θ, no momentum, no residual, no AdamW state
    torch.manual_seed(123)
    round_, state = MinerCheckpoint(tmp_path, restored.cluster).load()
    load_global(state, restored.theta, restored.outer, restored.feedback)

    assert round_ == 7
    _assert_same_tensors(dict(saved.theta.named_parameters()), dict(restored.theta.named_parameters()))
    _assert_same_tensors(saved.outer.momentum(), restored.outer.momentum())
    _assert_same_tensors(saved.feedback.state_dict(), restored.feedback.state_dict())
    _assert_same_tensors(_optimizer_tensors(saved.trainer), _optimizer_tensors(restored.trainer))
    assert restored.trainer.optimizer_steps == saved.trainer.optimizer_steps == 6
    assert torch.equal(torch.get_rng_state(), rng_after_save)
    # The resumed miner trains on exactly as the saved one would have.
    for miner in (saved, restored):
        miner.run_round(book)
    _assert_same_tensors(dict(saved.theta.named_parameters()), dict(restored.theta.named_parameters()))
    assert restored.trainer.optimizer_steps == 9


def test_only_the_last_committed_round_is_loaded_and_kept(tmp_path, book):
    miner = MinerState.fresh(seed=0)
    checkpoint = MinerCheckpoint(tmp_path, miner.cluster)
    assert checkpoint.load() is None
    checkpoint.save(3, global_tensors(miner.theta, miner.outer, miner.feedback))
    (tmp_path / "round-6").mkdir()  # a later round's folder, begun meanwhile: the cleanup leaves it
    checkpoint.save(4, global_tensors(miner.theta, miner.outer, miner.feedback))
    checkpoint.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "round-4", "round-6"]
    # A crash while round 5 was written: its folder exists, but the commit still names round 4.
    miner.cluster.accelerator.save_state(str(tmp_path / "round-5"))
    assert json.loads((tmp_path / "latest.json").read_text())["round"] == 4
    assert checkpoint.load()[0] == 4


def test_a_failed_background_write_commits_nothing_and_is_raised(tmp_path, book, monkeypatch):
    miner = MinerState.fresh(seed=0)
    checkpoint = MinerCheckpoint(tmp_path, miner.cluster)
    checkpoint.save(4, global_tensors(miner.theta, miner.outer, miner.feedback))
    checkpoint.wait()

    def disk_full(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint_module, "write_atomically", disk_full)
    checkpoint.save(5, global_tensors(miner.theta, miner.outer, miner.feedback))
    with pytest.raises(OSError, match="No space left"):
        checkpoint.wait()
    checkpoint.wait()  # raised once, then nothing is pending
    assert json.loads((tmp_path / "latest.json").read_text())["round"] == 4
    assert checkpoint.load()[0] == 4
