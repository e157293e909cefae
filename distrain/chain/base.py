"""The chain interface every backend implements, and the metagraph it returns."""

from abc import ABC, abstractmethod
from dataclasses import dataclass

from distrain.clock import BlockClock
from distrain.keys import verify_signature


class ChainError(Exception):
    """A chain operation failed; the message is one line meant for the user."""


class WeightsRejected(ChainError):
    """``set_weights`` was refused by the chain's rules.

    ``reason`` is a short stable code for programs (``not_registered``, ``no_permit``, ``rate_limited``,
    ``version_mismatch``, ``length_mismatch``, ``duplicate_uids``, ``unknown_uid``, ``invalid_weights``,
    ``too_few_weights``, ``over_weight_limit``, ``bad_signature``, and ``rejected`` for a chain error with
    no finer code); the message says the same for people.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


SUBTENSOR_ERRORS = {
    "not_registered": "HotKeyNotRegisteredInSubNet",
    "no_permit": "NeuronNoValidatorPermit",
    "rate_limited": "SettingWeightsTooFast",
    "version_mismatch": "IncorrectWeightVersionKey",
    "length_mismatch": "WeightVecNotEqualSize",
    "duplicate_uids": "DuplicateUids",
    "unknown_uid": "UidVecContainInvalidOne",
    "too_few_weights": "WeightVecLengthIsLow",
    "over_weight_limit": "MaxWeightExceeded",
    "bad_signature": "BadProof",
}
"""The error subtensor raises for each ``WeightsRejected`` reason (``invalid_weights`` has none: u16
weights cannot be negative or infinite, so only a client can get that wrong)."""


@dataclass
class Metagraph:
    """A snapshot of one subnet: per-uid lists, all indexed by position (``uids[i]`` is uid i's uid)."""

    block: int
    """Block at which the snapshot was taken."""
    netuid: int
    """Subnet id."""
    uids: list[int]
    """Neuron uids, ascending."""
    hotkeys: list[str]
    """SS58 address of each neuron's hotkey."""
    coldkeys: list[str]
    """SS58 address of the coldkey that owns each hotkey."""
    stake: list[float]
    """Stake behind each hotkey."""
    validator_permit: list[bool]
    """Whether the neuron may set weights (top stake holders)."""
    incentive: list[float]
    """Share of miner emission earned at the last epoch."""
    dividends: list[float]
    """Share of validator emission earned at the last epoch."""
    emission: list[float]
    """Tokens emitted to the neuron at the last epoch."""
    consensus: list[float]
    """Stake-weighted median weight the neuron received at the last epoch."""
    trust: list[float]
    """Fraction of the neuron's rank that survived clipping at the last epoch."""
    validator_trust: list[float]
    """Fraction of the neuron's weights within consensus at the last epoch (validators)."""
    last_update: list[int | None]
    """Block of the neuron's last accepted ``set_weights``, or None if it never set any."""

    @property
    def n(self) -> int:
        """Number of neurons."""
        return len(self.uids)

    def uid_of(self, hotkey: str) -> int | None:
        """The uid registered to ``hotkey``, or None."""
        try:
            return self.uids[self.hotkeys.index(hotkey)]
        except ValueError:
            return None


def check_signer(metagraph: Metagraph, hotkey: str, require_permit: bool, min_stake: float) -> str | None:
    """Why ``hotkey`` may not sign records that steer training, or None if it may.

    Reasons: ``not_registered`` (no uid on the subnet), ``no_permit`` (``require_permit`` and no validator
    permit), ``low_stake`` (stake below ``min_stake``).
    """
    try:
        i = metagraph.hotkeys.index(hotkey)
    except ValueError:
        return "not_registered"
    if require_permit and not metagraph.validator_permit[i]:
        return "no_permit"
    if metagraph.stake[i] < min_stake:
        return "low_stake"
    return None


class Chain(ABC):
    """A subnet as seen by miners and validators: keys, stake, weights, consensus.

    ``keypair`` arguments are bittensor hotkey keypairs (``bt.Wallet(...).hotkey``). Implementations are
    context managers; ``close`` releases files or connections.
    """

    @abstractmethod
    def block(self) -> int:
        """Current block number."""

    @abstractmethod
    def metagraph(self) -> Metagraph:
        """Snapshot of the subnet's neurons."""

    @abstractmethod
    def register(self, hotkey_ss58: str, coldkey_ss58: str) -> int:
        """Register a hotkey and return its uid; an already registered hotkey just gets its uid back."""

    @abstractmethod
    def add_stake(self, hotkey_ss58: str, amount: float) -> None:
        """Add ``amount`` of stake to a registered hotkey."""

    @abstractmethod
    def set_weights(self, keypair, uids: list[int], weights: list[float], version_key: int = 0) -> None:
        """Set the caller's weights on ``uids``; raises ``WeightsRejected`` when the chain refuses."""

    @abstractmethod
    def weights(self) -> dict[int, dict[int, float]]:
        """Current weights: ``{validator uid: {uid: normalised weight}}`` for every uid that set any."""

    @abstractmethod
    def serve(self, hotkey_ss58: str, info: dict) -> None:
        """Publish a registered hotkey's contact info (a small JSON-able dict)."""

    @abstractmethod
    def served(self) -> dict[str, dict]:
        """Contact info of every hotkey that served, by hotkey."""

    def verify(self, hotkey_ss58: str, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` is ``hotkey_ss58``'s sr25519 signature of ``message``."""
        return verify_signature(hotkey_ss58, message, signature)

    def round_clock(self, round_seconds: float) -> BlockClock | None:
        """A round clock read from this chain's blocks, or None where rounds follow the wall clock from a
        run's genesis (the local chain, whose blocks are themselves wall-clock time)."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release files or connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
