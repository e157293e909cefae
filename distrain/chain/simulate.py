"""Offline Yuma Consensus: run a sequence of epochs from a JSON scenario, as a fresh subnet would.

The scenario fixes the stake and gives each epoch's weights; the simulation starts with no permits and no
bonds, and each epoch assigns permits from stake that take effect from the next epoch, exactly as on chain.
So a scenario's first epoch usually has no weights: it only hands out the permits.
"""

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .base import ChainError
from .weights import U16_MAX
from .yuma import YumaParams, yuma_epoch

SCHEMA = """\
input JSON:
  {
    "params": {                  every key optional; defaults are subtensor's
      "kappa": 0.5,              stake fraction that must back a weight (consensus majority)
      "bonds_moving_avg": 0.9,   weight of old bonds in the EMA (1 - alpha)
      "bonds_penalty": 1.0,      0: bonds from raw weights, 1: from weights clipped to consensus
      "yuma3": true,             Yuma3 bonds (false: classic Yuma)
      "liquid_alpha": false,     Yuma3 only: per-bond alpha in [alpha_low, alpha_high]
      "alpha_low": 0.7, "alpha_high": 0.9,
      "alpha_steepness": 1000,   chain units: the sigmoid uses steepness / 100
      "max_validators": 64       permits go to the top stake holders
    },
    "stakes": [8, 1, 1, 0, 0],   one non-negative number per neuron (n neurons)
    "epochs": [                  run in order from a fresh subnet: no permits, no bonds
      {},                        no "weights": keep the previous ones (none at first)
      {"weights": [[0, 0, 0, 65535, 0], ...]}
    ]                            n rows (one per neuron, the weights it sets), n numbers each,
  }                              u16 or float: each row is normalised
output JSON: {"params": {...resolved...}, "epochs": [{"incentive": [n], "dividends": [n],
  "consensus": [n], "validator_permit": [n bools, from this epoch's stake, used from the next],
  "bonds": [n x n, as stored on chain / 65535: Yuma3 per-bond proportions, classic column
  max-upscaled]}, ...]}"""

_PARAM_TYPES = {"yuma3": bool, "liquid_alpha": bool, "max_validators": int}
"""Params that are not floats (everything else is a number)."""

_UNIT_PARAMS = ("kappa", "bonds_moving_avg", "bonds_penalty", "alpha_low", "alpha_high")
"""Params that are fractions in [0, 1]."""


@dataclass
class Scenario:
    """A validated simulation input."""

    params: YumaParams
    yuma3: bool
    stakes: np.ndarray
    weights: list[np.ndarray]
    """One n x n matrix per epoch (an epoch without weights repeats the previous matrix)."""


def _bad(field: str, problem: str) -> ChainError:
    return ChainError(f"invalid simulation input: {field}: {problem}")


def _number(value, field: str) -> float:
    # bool is an int in Python; true/false as a number is a mistake in the JSON.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(field, f"expected a finite number, got {json.dumps(value)}")
    return float(value)


def _numbers(values, field: str, n: int) -> np.ndarray:
    if not isinstance(values, list) or len(values) != n:
        got = f"{len(values)} entries" if isinstance(values, list) else json.dumps(values)
        raise _bad(field, f"expected a list of {n} numbers, got {got}")
    out = np.array([_number(v, f"{field}[{i}]") for i, v in enumerate(values)])
    if (out < 0).any():
        raise _bad(f"{field}[{int(np.argmax(out < 0))}]", "must be non-negative")
    return out


def _params(raw) -> tuple[YumaParams, bool]:
    if not isinstance(raw, dict):
        raise _bad("params", "expected an object")
    known = {f.name for f in fields(YumaParams)} | {"yuma3"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _bad(f"params.{unknown[0]}", f"unknown parameter; known: {', '.join(sorted(known))}")
    values = {}
    for key, value in raw.items():
        field = f"params.{key}"
        kind = _PARAM_TYPES.get(key, float)
        if kind is bool and not isinstance(value, bool):
            raise _bad(field, f"expected true or false, got {json.dumps(value)}")
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise _bad(field, f"expected a positive integer, got {json.dumps(value)}")
        if kind is float:
            value = _number(value, field)
            if key in _UNIT_PARAMS and not 0 <= value <= 1:
                raise _bad(field, f"must be in [0, 1], got {value}")
        values[key] = value
    yuma3 = values.pop("yuma3", True)
    params = YumaParams(**values)
    if params.alpha_low > params.alpha_high:
        raise _bad("params.alpha_low", f"must not exceed alpha_high ({params.alpha_high})")
    return params, yuma3


def parse_scenario(raw) -> Scenario:
    """Validate a decoded JSON scenario; a ChainError names the first bad field."""
    if not isinstance(raw, dict):
        raise _bad("(top level)", "expected an object with params, stakes and epochs")
    unknown = sorted(set(raw) - {"params", "stakes", "epochs"})
    if unknown:
        raise _bad(unknown[0], "unknown key; expected params, stakes and epochs")
    params, yuma3 = _params(raw.get("params", {}))
    stakes = raw.get("stakes")
    if not isinstance(stakes, list) or not stakes:
        raise _bad("stakes", "expected a non-empty list of numbers, one per neuron")
    n = len(stakes)
    stakes = _numbers(stakes, "stakes", n)
    epochs = raw.get("epochs")
    if not isinstance(epochs, list) or not epochs:
        raise _bad("epochs", "expected a non-empty list of epochs")

    weights, current = [], np.zeros((n, n))
    for e, epoch in enumerate(epochs):
        if not isinstance(epoch, dict) or set(epoch) - {"weights"}:
            raise _bad(f"epochs[{e}]", 'expected an object with at most a "weights" key')
        if "weights" in epoch:
            rows = epoch["weights"]
            if not isinstance(rows, list) or len(rows) != n:
                raise _bad(f"epochs[{e}].weights", f"expected {n} rows, one per neuron")
            current = np.stack([_numbers(row, f"epochs[{e}].weights[{i}]", n) for i, row in enumerate(rows)])
        weights.append(current)
    return Scenario(params=params, yuma3=yuma3, stakes=stakes, weights=weights)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as e:
        raise ChainError(f"cannot read simulation input {path}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise ChainError(f"simulation input {path} is not JSON: {e}") from e
    return parse_scenario(raw)


def simulate(scenario: Scenario) -> list[dict]:
    """Run every epoch from a fresh subnet; one JSON-able record per epoch."""
    n = len(scenario.stakes)
    permit, bonds = np.zeros(n, dtype=bool), np.zeros((n, n), dtype=np.int64)
    variant = "yuma3" if scenario.yuma3 else "classic"
    records = []
    for weights in scenario.weights:
        result = yuma_epoch(weights, scenario.stakes, permit, bonds, scenario.params, variant)
        permit, bonds = result.validator_permit, result.bonds
        records.append(
            {
                "incentive": result.incentive.tolist(),
                "dividends": result.dividends.tolist(),
                "consensus": result.consensus.tolist(),
                "bonds": (bonds / U16_MAX).tolist(),
                "validator_permit": permit.tolist(),
            }
        )
    return records


def plot(records: list[dict], path: str | Path) -> None:
    """A PNG of each neuron's dividends and incentive over the epochs."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    epochs = range(len(records))
    for ax, key in zip(axes, ("dividends", "incentive")):
        series = np.array([r[key] for r in records])
        for uid in range(series.shape[1]):
            if series[:, uid].any():  # neurons that never earn would only crowd the legend
                ax.plot(epochs, series[:, uid], marker="o", label=f"uid {uid}")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="small", loc="best")
    axes[-1].set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
