"""`distrain chain simulate` end to end: a JSON scenario in, per-epoch results (and a plot) out."""

import json

import pytest

from .test_chain_cli import run

SCENARIO = {
    "params": {"kappa": 0.5, "max_validators": 2},
    "stakes": [3, 1, 0, 0],
    "epochs": [
        {},  # a fresh subnet: this epoch only hands out the permits
        {"weights": [[0, 0, 65535, 0], [0, 0, 0, 1.0], [0, 0, 0, 0], [0, 0, 0, 0]]},
        {},  # keeps the previous weights
    ],
}


@pytest.fixture
def scenario(tmp_path):
    """``scenario(data)``: write data as JSON under tmp_path and return the path."""

    def write(data) -> str:
        path = tmp_path / "scenario.json"
        path.write_text(json.dumps(data))
        return str(path)

    return write


def test_simulate_writes_results_and_plot(scenario, tmp_path, capsys):
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    assert run("simulate", "--input", scenario(SCENARIO), "--output", str(out), "--plot", str(png)) == 0
    assert "3 epochs" in capsys.readouterr().err
    assert png.read_bytes().startswith(b"\x89PNG")

    result = json.loads(out.read_text())
    assert result["params"]["yuma3"] is True and result["params"]["max_validators"] == 2
    first, second, third = result["epochs"]
    for epoch in result["epochs"]:
        assert set(epoch) == {"incentive", "dividends", "consensus", "bonds", "validator_permit"}
        assert all(len(epoch[k]) == 4 for k in epoch) and all(len(row) == 4 for row in epoch["bonds"])
    # No permits yet: the weights do not count, but the epoch assigns permits by stake.
    assert not any(first["incentive"]) and first["validator_permit"] == [True, True, False, False]
    # Validator 0 (3/4 of the stake) carries consensus: miner 2 gets it all; miner 3's weight is clipped.
    assert second["consensus"] == [0, 0, 1.0, 0] and second["incentive"] == [0, 0, 1.0, 0]
    assert second["dividends"] == pytest.approx([1, 0, 0, 0])
    assert second["bonds"][0][2] == pytest.approx(0.1, abs=1e-4)
    # The repeated weights keep buying bonds: 0.1 + 0.9 * 0.1.
    assert third["bonds"][0][2] == pytest.approx(0.19, abs=1e-4)


def test_simulate_prints_to_stdout_and_runs_classic(scenario, capsys):
    assert run("simulate", "--input", scenario({**SCENARIO, "params": {"yuma3": False}})) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["params"]["yuma3"] is False
    # Classic bonds are stored column max-upscaled: validator 0 holds all of miner 2.
    assert result["epochs"][1]["bonds"][0][2] == 1.0


@pytest.mark.parametrize(
    "change, field",
    [
        ({"stakes": [1, -1, 0, 0]}, "stakes[1]"),
        ({"stakes": []}, "stakes"),
        ({"params": {"kapa": 0.5}}, "params.kapa"),
        ({"params": {"kappa": 2}}, "params.kappa"),
        ({"params": {"yuma3": "yes"}}, "params.yuma3"),
        ({"params": {"max_validators": 0}}, "params.max_validators"),
        ({"params": {"alpha_low": 0.9, "alpha_high": 0.5}}, "params.alpha_low"),
        ({"epochs": []}, "epochs"),
        ({"epochs": [{"weight": []}]}, "epochs[0]"),
        ({"epochs": [{"weights": [[0, 1, 0, 0]]}]}, "epochs[0].weights"),
        ({"epochs": [{}, {"weights": [[0, 1, 0, 0]] * 3 + [[0, 1, 0]]}]}, "epochs[1].weights[3]"),
        ({"epochs": [{"weights": [[0, "x", 0, 0]] * 4}]}, "epochs[0].weights[0][1]"),
        ({"epochs": [{"weights": [[0, None, 0, 0]] * 4}]}, "epochs[0].weights[0][1]"),
        ({"extra": 1}, "extra"),
    ],
)
def test_simulate_names_the_bad_field(scenario, capsys, change, field):
    assert run("simulate", "--input", scenario({**SCENARIO, **change})) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: invalid simulation input: {field}: ") and err.count("\n") == 1


def test_simulate_unreadable_input(tmp_path, capsys):
    assert run("simulate", "--input", str(tmp_path / "missing.json")) == 2
    assert "cannot read simulation input" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert run("simulate", "--input", str(tmp_path / "bad.json")) == 2
    assert "is not JSON" in capsys.readouterr().err


def test_simulate_help_documents_the_schema(capsys):
    with pytest.raises(SystemExit):
        run("simulate", "--help")
    out = capsys.readouterr().out
    for key in ("kappa", "bonds_moving_avg", "alpha_steepness", "stakes", "epochs", "validator_permit"):
        assert key in out
