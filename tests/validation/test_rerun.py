"""The rerun proof of work: the margin's arithmetic, reruns that start alike, and honest vs other pages."""

from __future__ import annotations

import math

import pytest
import torch

from distrain.compression import ErrorFeedback
from distrain.config import load_recipe
from distrain.data import PageBook, load_corpus
from distrain.models import build_model
from distrain.training import InnerTrainer, pseudo_gradient
from distrain.training.outer import snapshot
from distrain.training.plan import Plan, round_seed, train
from distrain.validation.rerun import Rerunner, direction_margin, rerun_verdicts

RECIPE = load_recipe(
    None,
    {
        "model.d_model": 64,
        "model.n_layers": 2,
        "model.n_heads": 2,
        "model.context": 64,
        "data.max_corpus_mb": 1.0,
        "inner.steps": 16,
        "inner.batch_size": 16,
        "compression.codec": "topk-sign",
        "validator.proof_of_work": "rerun",
    },
)


@pytest.fixture(scope="module")
def book():
    return PageBook(load_corpus(RECIPE.data), RECIPE.data, RECIPE.run.seed, RECIPE.model.context)


def test_the_margin_is_how_much_closer_a_delta_points_to_its_own_rerun():
    half = torch.ones(5000)
    own = {"w": torch.cat([half, 0 * half])}
    reference = {"w": torch.cat([0 * half, half])}
    # cos(delta, own) = 2·5000 / (|delta|·√5000), twice cos(delta, reference) = 5000 / (|delta|·√5000).
    delta = {"w": torch.cat([2 * half, half])}
    assert direction_margin(delta, own, reference) == pytest.approx(1.0)
    assert direction_margin({"w": torch.cat([half, 2 * half])}, own, reference) == pytest.approx(-0.5)
    zero = {"w": torch.zeros(10_000)}
    assert direction_margin(zero, own, reference) == -1.0
    for huge in (1e20, 3e38, math.inf, math.nan):  # squares past float32, or not numbers at all
        assert direction_margin({"w": torch.cat([2 * half, half]) * huge}, own, reference) in (1.0, -1.0)
    assert direction_margin(own, own, reference) == -1.0  # orthogonal to the reference: along no training


def test_a_margin_must_reach_the_floor_and_a_share_of_the_rounds_median():
    # Late in a run (swarm figures): honest margins 0.3-0.5, a cheater's 0.094, above the floor alone.
    late = {"a": 0.43, "b": 0.43, "c": 0.24, "d": 0.27, "cheat": 0.094}
    assert rerun_verdicts(late, 0.06, 0.5) == {"a": True, "b": True, "c": True, "d": True, "cheat": False}
    # Where most margins are low (cheaters in the majority, or one miner), the floor alone decides.
    low = {"a": 0.07, "b": 0.01, "c": -1.0}
    assert rerun_verdicts(low, 0.06, 0.5) == {"a": True, "b": False, "c": False}
    assert rerun_verdicts({"alone": 0.061}, 0.06, 0.5) == {"alone": True}
    assert rerun_verdicts({}, 0.06, 0.5) == {}


def test_random_values_point_along_no_rerun():
    """Cosines of random vectors with anything are ~1/√n: no margin, whichever sign they take."""
    reference = {"w": torch.randn(100_000, generator=torch.Generator().manual_seed(0))}
    own = {"w": reference["w"] + torch.randn(100_000, generator=torch.Generator().manual_seed(1))}
    for seed in range(20):
        noise = {"w": torch.randn(100_000, generator=torch.Generator().manual_seed(100 + seed))}
        assert direction_margin(noise, own, reference) == -1.0
    assert direction_margin(reference, own, reference) == pytest.approx(1 / math.sqrt(2) - 1, abs=0.01)


def test_every_rerun_of_a_round_starts_from_the_same_moments(book):
    model = build_model(RECIPE.model, RECIPE.run.seed)
    rerunner = Rerunner(RECIPE, book, steps=3)
    pages = book.assignment("miner-a", 0)
    first_round = []
    for _ in range(2):
        rerunner.start_round(snapshot(model), book.random_train_pages(16, b"secret"), b"round")
        first_round.append(rerunner.rerun(pages, seed=5))
        again = rerunner.rerun(pages, seed=5)
        assert all(torch.equal(first_round[-1][name], again[name]) for name in again)
    # The second round's reruns start from the moments the first round's random rerun left: warmer.
    assert not all(torch.equal(first_round[0][name], first_round[1][name]) for name in first_round[0])


def test_a_rerunner_restored_from_its_saved_state_reruns_as_one_that_never_stopped(book):
    model = build_model(RECIPE.model, RECIPE.run.seed)
    base, randoms, pages = (
        snapshot(model),
        book.random_train_pages(16, b"secret"),
        book.assignment("miner-a", 0),
    )
    running = Rerunner(RECIPE, book, steps=3)
    running.start_round(base, randoms, b"round 1")
    saved = running.state_tensors()
    restored, cold = Rerunner(RECIPE, book, steps=3), Rerunner(RECIPE, book, steps=3)
    restored.load_state_tensors({**saved, "sketch/someone": torch.zeros(4)})  # other keys are left alone
    for rerunner in (running, restored, cold):
        rerunner.start_round(base, randoms, b"round 2")
    expected = running.rerun(pages, seed=5)
    assert all(torch.equal(restored.rerun(pages, seed=5)[name], value) for name, value in expected.items())
    assert not all(torch.equal(cold.rerun(pages, seed=5)[name], value) for name, value in expected.items())
    # A state that does not fit the model (written for another one), that AdamW could not step from, or
    # that is partial leaves a rerunner cold: none of it is loaded.
    exp_avg = next(key for key in saved if key.endswith("/exp_avg"))
    exp_avg_sq, step = exp_avg.replace("/exp_avg", "/exp_avg_sq"), exp_avg.replace("/exp_avg", "/step")
    for broken in (
        {**saved, exp_avg: torch.zeros(3)},
        {**saved, exp_avg: torch.full_like(saved[exp_avg], math.nan)},
        {**saved, exp_avg_sq: -saved[exp_avg_sq] - 1},
        {**saved, step: torch.tensor(-5.0)},
        {**saved, step: torch.tensor(1.5)},
        {key: value for key, value in saved.items() if key != exp_avg},
        {key: value for key, value in saved.items() if not key.startswith(exp_avg.rsplit("/", 1)[0] + "/")},
    ):
        misfit = Rerunner(RECIPE, book, steps=3)
        misfit.load_state_tensors(broken)
        assert misfit.state_tensors() == {}


def test_a_delta_trained_on_the_miners_pages_passes_and_one_from_other_pages_does_not(book):
    """Rounds of a miner that trains on its assigned pages and of one that trains on somebody else's
    (with the same batch seeds), both sending topk-sign payloads (4 of every 1024 values, a sign each)
    through error feedback; θ moves by the honest miner's delta."""
    theta = build_model(RECIPE.model, RECIPE.run.seed)
    shapes = {name: param.shape for name, param in theta.named_parameters()}
    rerunner = Rerunner(RECIPE, book, steps=RECIPE.inner.steps)
    hotkey, bar = "miner-a", RECIPE.validator.rerun_margin
    miners = {
        pages_of: (InnerTrainer(build_model(RECIPE.model, RECIPE.run.seed), RECIPE.inner), ErrorFeedback(0.7))
        for pages_of in (hotkey, f"not-{hotkey}")
    }
    trained = build_model(RECIPE.model, RECIPE.run.seed)
    for round_ in range(4):
        base = snapshot(theta)
        secret = f"secret{round_}".encode()
        rerunner.start_round(base, book.random_train_pages(16, secret), secret)
        margins, deltas = {}, {}
        for pages_of, (trainer, feedback) in miners.items():
            trainer.start_from(theta)
            seed = round_seed(RECIPE.run.seed, hotkey, round_)
            train(trainer, book, Plan(round_, book.assignment(pages_of, round_), seed, math.inf))
            trainer.copy_into(trained)
            deltas[pages_of] = pseudo_gradient(base, trained)
            meta = {"hotkey": hotkey, "round": round_, "tokens": 0}
            sent = feedback.send(deltas[pages_of], RECIPE.compression.codec, meta, shapes)[2]
            margins[pages_of] = rerunner.margin(sent, hotkey, round_)
        # Measured: honest 0.41, 0.15, 0.19, 0.14; other pages 0.026, −0.095, −0.16, −0.012.
        assert margins[hotkey] > bar > margins[f"not-{hotkey}"], (round_, margins)
        with torch.no_grad():
            for name, param in theta.named_parameters():
                param.sub_(deltas[hotkey][name])
