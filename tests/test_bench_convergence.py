"""`distrain bench convergence`: the plan of runs, the targets, and a small real run end to end."""

import argparse
import json
import signal
import subprocess
import sys

import pytest

from distrain.bench import convergence
from distrain.bench.convergence import (
    BENCH_VALIDATOR,
    MIN_ROUND_SECONDS,
    Calibration,
    RunResult,
    calibrate,
    retry_seconds,
    round_seconds,
    run_convergence,
    target_checks,
    validator_pages,
)
from distrain.bench.plan import PLAIN_AVERAGING, SCALES, Scale, add_plan_arguments, plan_from_args, plan_runs
from distrain.bench.rounds import seed_list
from distrain.compression import CODECS, PRESET_INNER_STEPS, RECOMMENDED, SPARSE_OUTER_LR
from distrain.config import RecipeError, derive_recipe, load_recipe

FIELDS = {"name", "inner_steps", "codec", "final_loss", "bytes_per_miner", "wall_s", "compute_utilisation"}


def test_the_default_plan_compares_ddp_diloco_and_every_codec():
    runs = plan_runs(SCALES["cpu"], codec_steps=24, codecs=list(CODECS))
    names = [r.name for r in runs]
    assert names[0] == "ddp" and runs[0].inner_steps == 1 and runs[0].codec == "fp32"
    expected = {"diloco-h12", "diloco-h24", "diloco-h24-avg", "diloco-h48", "recommended", "recommended-h48"}
    assert expected | {"templar"} <= set(names)
    assert {r.codec for r in runs} == set(CODECS)  # fp32 is the uncompressed DiLoCo
    assert len(names) == len(set(names))
    assert all(SCALES["cpu"].steps % r.inner_steps == 0 for r in runs)  # same tokens in every run
    assert next(r for r in runs if r.name == "recommended").codec == RECOMMENDED
    # Sparse codecs run with plain SGD at their own lr (error feedback stands in for momentum); dense
    # ones and uncompressed DiLoCo with the recipe's Nesterov step.
    for run in runs:
        if run.codec in SPARSE_OUTER_LR:
            assert run.overrides == {
                "outer.lr": SPARSE_OUTER_LR[run.codec], "outer.momentum": 0.0, "outer.nesterov": False
            }  # fmt: skip
        elif run.name.startswith("diloco-h") and not run.name.endswith("-avg"):
            assert run.overrides == {}


@pytest.mark.parametrize("scale", sorted(SCALES))
@pytest.mark.parametrize("codec_steps", [PRESET_INNER_STEPS[RECOMMENDED], 24])  # the default and the recipe's
def test_every_scale_plans_every_run(scale, codec_steps):
    runs = plan_runs(SCALES[scale], codec_steps, codecs=list(CODECS))  # raises if an H does not divide
    assert {"ddp", f"diloco-h{codec_steps}-avg", "recommended", "templar"} <= {r.name for r in runs}


def test_an_h_that_does_not_divide_the_steps_is_refused():
    with pytest.raises(RecipeError, match="diloco-h7"):
        plan_runs(Scale(miners=2, steps=24, diloco_steps=(7,)), codec_steps=24, codecs=["fp32"])


def test_codecs_run_at_the_h_the_recommended_preset_was_measured_at_unless_codec_steps_says_otherwise():
    steps = PRESET_INNER_STEPS[RECOMMENDED]
    base, _, runs, _ = _plan()
    by_name = {run.name: run for run in runs}
    codec_runs = [run for run in runs if run.codec != "fp32" and run.name != "recommended-h48"]
    assert base.inner.steps == steps != 24 and {run.inner_steps for run in codec_runs} == {steps}
    # ... where uncompressed DiLoCo runs too, so that the targets compare them at the same H.
    assert by_name[f"diloco-h{steps}"].inner_steps == by_name[f"diloco-h{steps}-avg"].inner_steps == steps
    assert {run.inner_steps for run in _plan("--codec-steps", "12", "--only", "recommended,templar")[2]} == {
        12
    }
    # Only the runs asked for must divide the steps: 24 steps leave no room for H = 16.
    assert [run.name for run in _plan("--steps", "24", "--only", "ddp,diloco-h24")[2]] == [
        "ddp",
        "diloco-h24",
    ]
    with pytest.raises(RecipeError, match=f"recommended: H={steps} does not divide --steps 24"):
        _plan("--steps", "24", "--only", "ddp,recommended")


def test_rounds_leave_the_validator_time_to_keep_up():
    # 3M parameters on 2 cores: a 1.3 s ddp round let the validator fall behind and see no submissions.
    calibration = Calibration(step_seconds=0.26, page_seconds=0.085, exchange_seconds={"fp32": 0.1})
    pages = validator_pages(derive_recipe(load_recipe(None), BENCH_VALIDATOR), miners=2)
    assert pages == 12 + 1 + 2 * 1 + 2 * (1 + 4 * 1)  # validation, held-out, random; per submission
    ddp, diloco = (round_seconds(h, calibration, "fp32", 2, pages) for h in (1, 24))
    assert ddp >= pages * calibration.page_seconds + 0.5  # one step a round: the validator sets the pace
    assert diloco > 24 * calibration.step_seconds / 0.7  # H steps a round: training does
    small = Calibration(0.01, 0.001, {"fp32": 0.01})
    assert round_seconds(1, small, "fp32", 2, pages) == MIN_ROUND_SECONDS  # never below it


def test_rounds_make_room_for_a_slow_exchange():
    # 25M parameters on an H100: 16 ms steps, but seconds of compressing, fetching and checkpointing
    # between rounds; rounds sized for the steps alone left the miners no time to train.
    calibration = Calibration(
        step_seconds=0.016, page_seconds=0.004, exchange_seconds={"fp32": 3.0, "topk": 1.0}
    )
    pages = validator_pages(derive_recipe(load_recipe(None), BENCH_VALIDATOR), miners=4)
    dense, sparse = (round_seconds(24, calibration, codec, 4, pages) for codec in ("fp32", "topk"))
    assert dense * 0.7 - 3.0 >= 24 * 0.016  # the steps still fit once the exchange is done
    assert dense > sparse > 1.0 / 0.7


def test_calibration_measures_each_codecs_exchange(tmp_path):
    recipe = load_recipe(None)
    calibration = calibrate(recipe, ["fp32", "topk"], miners=2, folder=tmp_path / "calibration", steps=2)
    assert calibration.step_seconds > 0 and calibration.page_seconds > 0
    assert set(calibration.exchange_seconds) == {"fp32", "topk"}
    assert all(0 < seconds < 30 for seconds in calibration.exchange_seconds.values())
    assert not (tmp_path / "calibration").exists()  # its checkpoints are gone


def _result(name: str, loss: float, sent: float) -> RunResult:
    return RunResult(name, 1, "fp32", loss, sent, 1.0, 0.5, 1, 1.0, 1.0, 1.0, sent, 5.0, [])


def test_a_short_run_gets_rounds_as_much_longer_as_it_fell_short():
    assert retry_seconds(7.0, share=0.95) is None and retry_seconds(7.0, share=0.9) is None  # enough
    assert retry_seconds(7.0, share=0.84) == round(7.0 / 0.84 * convergence.RETRY_MARGIN, 2)
    assert retry_seconds(7.0, share=0.0) == 7.0 * convergence.MAX_RETRY_STRETCH  # bounded


@pytest.mark.parametrize(
    "first, second, retry, tries, warned",
    [
        ((0.84, 1.0), (1.0, 1.0), True, 2, False),  # miners ran out of time for their steps
        ((1.0, 0.5), (1.0, 1.0), True, 2, False),  # the validator fell behind: submissions missed
        ((0.84, 1.0), (0.85, 1.0), True, 2, True),  # still short: it stays, with a warning
        ((0.84, 1.0), None, False, 1, True),  # --no-retry
        ((0.95, 1.0), None, True, 1, False),  # long enough the first time
    ],
)
def test_a_run_cut_short_runs_once_more(tmp_path, monkeypatch, first, second, retry, tries, warned):
    # The swarm itself runs in `bench_run` below; here, what the benchmark does with a short first try.
    base, scale, runs, _ = _plan("--steps", "32", "--only", "diloco-h16-avg")
    full = scale.steps * base.inner.batch_size * base.model.context
    calls = []

    def swarm(base, run, scale, calibration, out, echo, seconds=None):
        calls.append(seconds)
        trained, averaged = first if len(calls) == 1 else second
        (out / run.name).mkdir(parents=True, exist_ok=True)
        (out / run.name / "log.txt").write_text(f"try {len(calls)}")
        result = _result(run.name, 2.5 - 0.1 * len(calls), 3e8)
        result.round_seconds, result.latest_train_start_s = seconds or 7.0, 0.58
        result.tokens_per_miner, result.averaged_fraction = trained * full, averaged
        result.curve = [(0.0, 5.0), (3e8, result.final_loss)]
        return result

    monkeypatch.setattr(convergence, "calibrate", lambda *args: Calibration(0.1, 0.01, {"fp32": 0.1}))
    monkeypatch.setattr(convergence, "run_one", swarm)
    lines = []
    report = run_convergence(base, scale, runs, tmp_path, lines.append, retry=retry)
    (run,) = report["runs"]
    assert len(calls) == tries and any("warning" in line for line in lines) == warned
    if tries == 1:
        assert run["first_try"] is None and run["final_loss"] == 2.4
        return
    assert calls == [None, round(7.0 / min(first) * convergence.RETRY_MARGIN, 2)]
    assert run["round_seconds"] == calls[1] and run["final_loss"] == 2.3
    assert run["first_try"] == {
        "round_seconds": 7.0,
        "trained": first[0],
        "averaged": first[1],
        "final_loss": 2.4,
    }
    assert (tmp_path / "diloco-h16-avg.first-try" / "log.txt").read_text() == "try 1"  # its logs are kept
    assert (tmp_path / "diloco-h16-avg" / "log.txt").read_text() == "try 2"


def test_targets_compare_the_runs_they_name():
    results = [
        _result("ddp", 2.00, 1e9),
        _result("diloco-h24", 2.05, 1e7),
        _result("recommended", 2.07, 5e4),
        _result("templar", 2.10, 9e4),
    ]
    checks = {c["target"]: c for c in target_checks(results, codec_steps=24)}
    assert checks["recommended within 2% of diloco-h24"]["met"]
    # With both uncompressed runs at the codecs' H, the recommended codec is held to the better one.
    better = {c["target"]: c for c in target_checks([*results, _result("diloco-h24-avg", 2.02, 1e7)], 24)}
    assert not better["recommended within 2% of diloco-h24-avg"]["met"]
    assert checks["recommended no worse than templar"]["met"]
    assert not checks["recommended within 3% of ddp"]["met"]  # 3.5% above ddp
    assert checks["recommended sends >= 10,000x fewer bytes than ddp"]["fewer_bytes"] == 20_000
    assert all(c["equal_tokens"] for c in checks.values())
    # The recommended preset at a longer H is checked against ddp too; the other codecs are not.
    longer = _result("recommended-h48", 2.05, 8e3)
    checks = {c["target"]: c for c in target_checks([*results, longer], codec_steps=24)}
    assert (
        checks["recommended-h48 within 3% of ddp"]["met"]
        and checks["recommended-h48 within 3% of ddp"]["loss_gap"] == 0.025
    )
    assert checks["recommended-h48 sends >= 10,000x fewer bytes than ddp"]["met"]
    assert "templar sends >= 10,000x fewer bytes than ddp" not in checks


def test_targets_say_when_deadlines_left_the_runs_unequal():
    # 25M parameters on an H100: late exchanges cut recommended to 93.5% of its steps, templar to 97%.
    recommended, templar = _result("recommended", 1.7463, 4.1e7), _result("templar", 1.7356, 6.7e7)
    recommended.tokens_per_miner, templar.tokens_per_miner = 4_411_392, 4_575_232
    (check,) = target_checks([recommended, templar], codec_steps=24)
    assert check["target"] == "recommended no worse than templar"
    assert not check["met"] and not check["equal_tokens"]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("convergence")
    recipe = out / "recipe.yaml"
    recipe.write_text("data: {max_corpus_mb: 2, pages_per_round: 4}\nvalidator: {assignment_pages: 2}\n")
    command = [
        sys.executable, "-m", "distrain", "bench", "convergence", "--json", "--out", str(out),
        "--recipe", str(recipe), "--steps", "2", "--diloco-steps", "2", "--codec-steps", "2",
        "--codecs", f"fp32,{RECOMMENDED}", "--only", "ddp,recommended",  # two swarms: CI has 2 cores
        # Templar's aggregation, so that `bench rounds` below checks that miners and validators use the
        # recipe's: with 2 miners it doubles what one of them sent alone, which the losses would show.
        "--set", "outer.average=senders",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, json.loads(result.stdout)  # stdout holds exactly one JSON object; progress is on stderr


def test_json_contract_and_files(bench_run):
    out, report = bench_run
    runs = {r["name"]: r for r in report["runs"]}
    assert set(runs) == {"ddp", "recommended"}
    assert all(set(r) >= FIELDS for r in runs.values())
    assert runs["ddp"]["inner_steps"] == 1 and runs["recommended"]["codec"] == RECOMMENDED
    saved = json.loads((out / "convergence.json").read_text())
    assert saved["runs"] == report["runs"]
    assert report["setup"]["set"] == {"outer.average": "senders"}
    assert (out / "convergence.png").stat().st_size > 10_000


def test_every_run_trains_the_same_tokens_and_learns(bench_run):
    _, report = bench_run
    tokens = {r["tokens_per_miner"] for r in report["runs"]}
    assert tokens == {2 * 16 * 64}  # steps x batch x context: no deadline cut a round short
    for run in report["runs"]:
        assert run["final_loss"] < run["initial_loss"]
        assert 0 < run["compute_utilisation"] < 1 and run["wall_s"] > 0
        assert run["averaged_fraction"] == 1.0
        assert (
            0 <= run["latest_train_start_s"] < 0.7 * run["round_seconds"]
        )  # steps began before the deadline
        assert 0 < run["exchange_s"] < 0.7 * run["round_seconds"]


def test_bytes_follow_exchanges_and_compression(bench_run):
    _, report = bench_run
    runs = {r["name"]: r for r in report["runs"]}
    params = report["setup"]["parameters"]
    # ddp: 2 exchanges of a dense fp32 delta, each fetched by the other miner and the validator.
    assert runs["ddp"]["bytes_per_miner"] == pytest.approx(2 * 2 * 4 * params, rel=0.01)
    # recommended: 1 exchange (H = 2) of a payload > 100x smaller than fp32.
    assert runs["recommended"]["bytes_per_miner"] < runs["ddp"]["bytes_per_miner"] / 2 / 100
    # The served-bytes counters saw at least the payloads fetched before each miner's last log line.
    assert runs["ddp"]["bytes_served_per_miner"] >= 4 * params


def test_bench_rounds_reproduces_the_swarms_losses_in_one_process(bench_run):
    # The same recipe, hotkeys, pages, batches, codec and outer step without the network: every miner
    # finished its steps in the swarms (see above), so the losses must agree up to float summation order.
    out, report = bench_run
    command = [
        sys.executable, "-m", "distrain.bench.rounds", "--json", "--recipe", str(out / "recipe.yaml"),
        "--steps", "2", "--diloco-steps", "2", "--codec-steps", "2", "--only", "ddp,recommended",
        "--set", "outer.average=senders",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rounds = {r["name"]: r for r in json.loads(result.stdout)["runs"]}
    params = report["setup"]["parameters"]
    for swarm in report["runs"]:
        model = rounds[swarm["name"]]
        assert model["curve"] == pytest.approx([loss for _, loss in swarm["curve"]], abs=2e-3)
        # Each payload reached the other miner and the validator in the swarm.
        sent = model["bits_per_param"] / 8 * params * len(model["curve"][1:]) * 2
        assert sent == pytest.approx(swarm["bytes_per_miner"], rel=0.02)


def test_bench_rounds_runs_each_seed_and_reports_their_mean(bench_run, tmp_path):
    out, _ = bench_run
    command = [
        sys.executable, "-m", "distrain.bench.rounds", "--json", "--recipe", str(out / "recipe.yaml"),
        "--steps", "2", "--diloco-steps", "2", "--codec-steps", "2", "--only", "recommended", "--seed", "0,1",
        "--out", str(tmp_path / "rounds"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [(r["name"], r["seed"]) for r in report["runs"]] == [("recommended", 0), ("recommended", 1)]
    losses = [r["final_loss"] for r in report["runs"]]
    assert losses[0] != losses[1]  # the seed moves every miner's batches
    assert report["mean_final_loss"] == {"recommended": pytest.approx(sum(losses) / 2)}
    assert report["sd_final_loss"] == {"recommended": pytest.approx(abs(losses[0] - losses[1]) / 2**0.5)}
    assert "recommended        mean of 2 seeds:" in result.stderr
    # --out keeps the same report beside a picture of it.
    assert json.loads((tmp_path / "rounds" / "rounds.json").read_text()) == report
    assert (tmp_path / "rounds" / "rounds.png").read_bytes().startswith(b"\x89PNG")


def _plan(*argv: str):
    parser = argparse.ArgumentParser()
    add_plan_arguments(parser)
    return plan_from_args(parser.parse_args(argv))


def test_set_overrides_the_base_and_every_run_after_its_own_settings():
    base, _, runs, settings = _plan(
        "--only", "diloco-h24,recommended", "--set", "outer.lr=5", "--set", "outer.average=senders"
    )
    assert settings == {"outer.lr": "5", "outer.average": "senders"}
    assert (base.outer.lr, base.outer.average) == (5.0, "senders")
    by_name = {run.name: run for run in runs}
    # The sparse run keeps its own momentum and Nesterov settings; only the lr moves.
    assert by_name["recommended"].overrides == {
        "outer.lr": "5", "outer.momentum": 0.0, "outer.nesterov": False, "outer.average": "senders",
    }  # fmt: skip
    assert by_name["diloco-h24"].overrides == {"outer.lr": "5", "outer.average": "senders"}
    # The runs that plain averaging defines keep it, and take the rest: the codecs are held to them.
    _, _, runs, _ = _plan("--set", "outer.lr=5", "--set", "outer.average=senders")
    by_name = {run.name: run for run in runs}
    for name in ("ddp", f"diloco-h{PRESET_INNER_STEPS[RECOMMENDED]}-avg"):
        assert by_name[name].overrides == {**PLAIN_AVERAGING, "outer.average": "senders"}, name
    with pytest.raises(RecipeError, match="--set takes KEY=VALUE"):
        _plan("--set", "outer.lr")
    with pytest.raises(
        RecipeError, match="--set inner.steps: the benchmark sets it for each run; use --codec"
    ):
        _plan("--set", "inner.steps=6")
    with pytest.raises(
        RecipeError, match=r"not in the plan: \['recomended'\]; the plan has: ddp, .*recommended"
    ):
        _plan("--only", "recomended")


def test_bench_rounds_seed_lists():
    assert seed_list("2") == [2] and seed_list("0,3,1") == [0, 3, 1]
    for malformed in ("1,x", "1,,2", "0,0"):
        with pytest.raises(argparse.ArgumentTypeError):
            seed_list(malformed)


def test_bench_rounds_imports_nothing_of_the_swarm():
    # So that it runs on a bare GPU image: torch, accelerate, safetensors, numpy, yaml, tqdm and the
    # SDK's key binding, without hivemind or the bittensor SDK.
    code = (
        "import sys, distrain.bench.rounds; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'hivemind', 'bittensor', 'wandb', 'matplotlib'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_bench_rounds_stopped_by_sigterm_reports_what_it_ran(tmp_path):
    """A benchmark cut off by `timeout` (a lent GPU's limit, a job scheduler's) keeps its figures."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data: {max_corpus_mb: 2, pages_per_round: 4}\nvalidator: {assignment_pages: 2}\n")
    command = [
        sys.executable, "-m", "distrain.bench.rounds", "--json", "--recipe", str(recipe), "--steps", "400",
        "--diloco-steps", "2", "--codec-steps", "2", "--only", "templar,recommended", "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            first_progress = process.stderr.readline()  # at a tenth of the first run's 200 rounds
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=120)
        finally:
            process.kill()
    assert "templar: round 20/200" in first_progress, first_progress + stderr
    assert process.returncode == 1 and "templar: stopped after" in stderr, stderr
    report = json.loads(stdout)
    (run,) = report["runs"]  # the plan runs templar first; recommended never started
    assert run["name"] == "templar" and not run["finished"]
    assert 20 <= len(run["curve"]) - 1 < 200 and run["final_loss"] == run["curve"][-1]
    assert run["bits_per_param"] > 0 and report["mean_final_loss"] == {}
    assert json.loads((tmp_path / "out" / "rounds.json").read_text()) == report
