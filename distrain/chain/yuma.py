"""Yuma Consensus: turn validators' weights and stake into incentive, dividends, bonds and permits.

Written from the published algorithm (subtensor's ``epoch``), in float64 numpy:

    S   = stake, normalised; the epoch's new validator permits go to its top ``max_validators``
    S_a = S of the uids that held a permit when the epoch began, renormalised (the active stake)
    W   = weights with non-permitted rows and self-weights masked, rows normalised
    C_j = largest c such that the active stake of validators with W_ij >= c is at least kappa
    W'  = min(W, C)                                  (clip weights above consensus)
    R   = S_a^T W'      incentive = R / sum(R)       trust = R / (S_a^T W)
    W_b = W + bonds_penalty * (W' - W)               (the weights bonds are bought with)

then one of two bond rules (``VARIANTS``):

- ``classic``: dB = col_normalise(S_a * W_b); B = col_normalise((1 - a) * col_normalise(B_old) + a * dB)
  with a = 1 - bonds_moving_avg; D = normalise(B I). Stored column max-upscaled.
- ``yuma3``: B = min(1, (1 - a) * B_old + a * W_b) with a per entry from liquid alpha (or the fixed
  1 - bonds_moving_avg); D = normalise(S_a * (col_normalise(B) I)). Stored as proportions.

As on chain, bonds persist between epochs as u16 (``floor(x * 65535)``) and only for uids holding a
permit after the epoch. Every normalisation of an all-zero vector returns zeros, so an empty or idle
subnet yields zeros, not NaN. Subtensor computes in I32F32 fixed point (32 fractional bits, truncating);
float64 agrees to about 1e-9, which moves a stored u16 bond by at most one unit.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .weights import U16_MAX
from .yuma_math import (
    max_upscale_columns,
    normalise,
    normalise_columns,
    normalise_rows,
    ratio,
    to_u16,
    top_k_nonzero,
    weighted_median_columns,
)


@dataclass(frozen=True)
class YumaParams:
    """Consensus hyperparameters; defaults are subtensor's defaults, as floats instead of u16/u64."""

    kappa: float = 0.5
    """Stake fraction that must support a weight for it to count (chain: u16 32767 / 65535)."""
    bonds_moving_avg: float = 0.9
    """Weight of the old bonds in the bonds EMA (chain: u64 900_000 / 1_000_000)."""
    bonds_penalty: float = 1.0
    """0: bonds bought with the raw weights; 1: with the weights clipped to consensus."""
    liquid_alpha: bool = False
    """Yuma3 only: a per-bond EMA rate between ``alpha_low`` and ``alpha_high`` instead of the fixed one."""
    alpha_low: float = 0.7
    """Liquid alpha's slowest rate (chain: u16 45875 / 65535)."""
    alpha_high: float = 0.9
    """Liquid alpha's fastest rate (chain: u16 58982 / 65535)."""
    alpha_steepness: float = 1000.0
    """Liquid alpha's sigmoid steepness, in the chain's units (the sigmoid uses steepness / 100)."""
    max_validators: int = 64
    """How many of the top stake holders get a validator permit at each epoch."""


@dataclass
class EpochResult:
    """Per-uid outcome of one epoch; every array has length n except ``bonds`` (n x n)."""

    stake: np.ndarray
    """Normalised stake of every uid."""
    active_stake: np.ndarray
    """Normalised stake of the uids that held a permit during the epoch (the stake that votes)."""
    consensus: np.ndarray
    """Stake-weighted kappa-median of each uid's column of weights."""
    incentive: np.ndarray
    """Normalised clipped ranks: the miners' share of miner emission (sums to 1, or all 0)."""
    dividends: np.ndarray
    """Validators' share of validator emission, from their bonds (sums to 1, or all 0)."""
    trust: np.ndarray
    """Fraction of each uid's rank that survived clipping to consensus (1 = nobody over-weighted it)."""
    ranks: np.ndarray
    """Stake-weighted sums of clipped weights, before normalisation."""
    validator_trust: np.ndarray
    """Share of each validator's weight that lies within consensus (1 = fully agrees)."""
    validator_permit: np.ndarray
    """Permits assigned by this epoch from stake; they take effect from the next epoch."""
    bonds: np.ndarray
    """Bonds as the chain stores them (u16 integers, rows = validators); feed back into the next epoch."""


@dataclass
class BondsUpdate:
    """What a bond rule returns: the new bonds (floats, before u16 storage) and the dividends."""

    bonds: np.ndarray
    dividends: np.ndarray


@dataclass
class BondsInput:
    """What a bond rule works from."""

    weights: np.ndarray
    """W_b: the weights bonds are bought with (rows normalised, masked, penalised)."""
    old_bonds: np.ndarray
    """Stored u16 bonds from the previous epoch."""
    consensus: np.ndarray
    incentive: np.ndarray
    active_stake: np.ndarray
    params: YumaParams


def classic_bonds(x: BondsInput) -> BondsUpdate:
    """Bonds as an EMA of each validator's stake-weighted share of each miner, column-normalised."""
    alpha = 1.0 - x.params.bonds_moving_avg
    delta = normalise_columns(x.active_stake[:, None] * x.weights)
    old = normalise_columns(x.old_bonds.astype(np.float64))
    bonds = normalise_columns(alpha * delta + (1.0 - alpha) * old)
    dividends = normalise(bonds @ x.incentive)
    # Stored max-upscaled per column so the u16 keeps the most precision; the next epoch renormalises.
    return BondsUpdate(bonds=max_upscale_columns(bonds), dividends=dividends)


def liquid_alpha(x: BondsInput, old_bonds: np.ndarray) -> np.ndarray:
    """Per-bond EMA rate: fast (``alpha_high``) when a validator moves far from consensus or its bond.

    A validator raising its weight above its bond is "buying": the distance is how far the weight exceeds
    consensus. Lowering it is "selling": the distance is how far the bond exceeds the new weight. A
    sigmoid centred at 0.5 maps the distance onto [alpha_low, alpha_high].
    """
    p = x.params
    w, c = x.weights, x.consensus[None, :]
    buying = np.clip(w - c, 0.0, 1.0)
    selling = np.clip(old_bonds - w, 0.0, 1.0)
    distance = np.where(w >= old_bonds, buying, selling)
    sigmoid = 1.0 / (1.0 + np.exp(-(p.alpha_steepness / 100.0) * (distance - 0.5)))
    return np.clip(p.alpha_low + sigmoid * (p.alpha_high - p.alpha_low), p.alpha_low, p.alpha_high)


def yuma3_bonds(x: BondsInput) -> BondsUpdate:
    """Bonds as an EMA of the weights themselves, each in [0, 1]; dividends scale with stake.

    Unlike classic bonds these are not a share of the miner, so a validator's bonds do not shrink when
    others join, and an early validator keeps the bonds it bought before consensus caught up.
    """
    p = x.params
    old = x.old_bonds / U16_MAX
    if p.liquid_alpha and x.consensus.any():
        alpha = liquid_alpha(x, old)
    else:
        alpha = np.full_like(old, 1.0 - p.bonds_moving_avg)
    bonds = np.minimum((1.0 - alpha) * old + alpha * x.weights, 1.0)
    per_validator = normalise_columns(bonds) @ x.incentive
    return BondsUpdate(bonds=bonds, dividends=normalise(per_validator * x.active_stake))


BondsRule = Callable[[BondsInput], BondsUpdate]

VARIANTS: dict[str, BondsRule] = {"yuma3": yuma3_bonds, "classic": classic_bonds}
"""Bond rules by name; ``SubnetParams.yuma`` picks one, ``yuma_epoch``'s ``variant`` too."""


def yuma_epoch(
    weights: np.ndarray,
    stake: np.ndarray,
    validator_permit: np.ndarray,
    bonds: np.ndarray,
    params: YumaParams,
    variant: str = "yuma3",
) -> EpochResult:
    """One Yuma Consensus epoch.

    Args:
        weights: n x n, row i = weights set by uid i (normalised here, so raw u16 rows are fine).
        stake: length n, raw stake per uid.
        validator_permit: length n booleans held when the epoch begins; only their stake and weights count.
        bonds: n x n stored u16 bonds from the previous epoch (zeros for a new subnet).
        params: consensus hyperparameters.
        variant: bond rule, a key of ``VARIANTS``.
    """
    permit = np.asarray(validator_permit, dtype=bool)
    stake = normalise(np.asarray(stake, dtype=np.float64))
    active_stake = normalise(np.where(permit, stake, 0.0))

    w = np.asarray(weights, dtype=np.float64).copy()
    w[~permit] = 0.0
    # A validator's weight on itself would let it pay itself incentive: masked, as on chain.
    np.fill_diagonal(w, 0.0)
    w = normalise_rows(w)

    consensus = weighted_median_columns(active_stake, w, params.kappa)
    clipped = np.minimum(w, consensus[None, :])
    pre_ranks = active_stake @ w
    ranks = active_stake @ clipped
    incentive = normalise(ranks)

    update = VARIANTS[variant](
        BondsInput(
            weights=w + params.bonds_penalty * (clipped - w),
            old_bonds=np.asarray(bonds),
            consensus=consensus,
            incentive=incentive,
            active_stake=active_stake,
            params=params,
        )
    )
    new_permit = top_k_nonzero(stake, params.max_validators)
    return EpochResult(
        stake=stake,
        active_stake=active_stake,
        consensus=consensus,
        incentive=incentive,
        dividends=update.dividends,
        trust=ratio(ranks, pre_ranks),
        ranks=ranks,
        validator_trust=clipped.sum(axis=1),
        validator_permit=new_permit,
        # Bonds are kept only by uids that hold a permit after the epoch; the others' rows are cleared.
        bonds=np.where(new_permit[:, None], to_u16(update.bonds), 0),
    )


@dataclass
class Emission:
    """One epoch's emission, split as the chain splits it."""

    owner: float
    """The subnet owner's cut."""
    miners: np.ndarray
    """Per uid, paid by incentive."""
    validators: np.ndarray
    """Per uid, paid by dividends."""

    @property
    def per_uid(self) -> np.ndarray:
        return self.miners + self.validators


def split_emission(result: EpochResult, total: float, owner_cut: float, miner_share: float = 0.5) -> Emission:
    """Owner cut first; the rest goes to miners by incentive and validators by dividends.

    On chain incentive and dividends each sum to 1 and the rest is divided by their combined sum, so
    each side gets half (``miner_share`` = 0.5) while both earn, and all of it when only one side does.
    When neither earns (no weights yet) the validators are paid by active stake, or by stake if nobody
    holds a permit.
    """
    owner = owner_cut * total
    rest = total - owner
    miners = miner_share * result.incentive
    validators = (1.0 - miner_share) * result.dividends
    earned = miners.sum() + validators.sum()
    if earned > 0:
        return Emission(owner, miners / earned * rest, validators / earned * rest)
    fallback = result.active_stake if result.active_stake.any() else result.stake
    return Emission(owner, np.zeros_like(miners), fallback * rest)
