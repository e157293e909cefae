"""The ``bittensor`` backend: the ``Chain`` interface through the bittensor SDK (all SDK calls live here).

with BittensorChain("finney", netuid=N) as chain:          # a real network (or "test", "local", a ws URL)
    chain.set_weights(wallet.hotkey, uids, weights)
with BittensorChain(path="runs/chain.db", netuid=1) as chain:   # the same SDK code on the local chain
    ...

Weights go through the SDK's ``SetWeights`` intent, which conforms them to the subnet's hyperparameters
(u16, ``max_weight_limit``, ``min_allowed_weights``) and takes the timelocked commit-reveal path when the
subnet has it on. Registration and staking spend the coldkey's TAO: they are left to ``btcli``.
"""

import logging
from contextlib import contextmanager
from pathlib import Path

import bittensor as bt
from bittensor import ErrorCode

from distrain.clock import BLOCK_SECONDS, BlockClock

from .base import SUBTENSOR_ERRORS, Chain, ChainError, Metagraph, WeightsRejected
from .local import LocalChain
from .local_substrate import RAO_PER_UNIT, LocalSubstrate

log = logging.getLogger("distrain.chain")

_REASONS = {name: reason for reason, name in SUBTENSOR_ERRORS.items()}
"""``WeightsRejected`` reason of each subtensor error."""

_REASONS_BY_CODE = {
    # What the SDK's own preflight raises (no chain error name attached).
    ErrorCode.NOT_REGISTERED: "not_registered",
    ErrorCode.RATE_LIMITED: "rate_limited",
    ErrorCode.NOT_AUTHORIZED: "no_permit",
    ErrorCode.INVALID_ARGUMENT: "invalid_weights",
}


@contextmanager
def _sdk_errors(doing: str):
    """Turn any SDK failure into a one-line ``ChainError``."""
    try:
        yield
    except bt.BittensorError as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        raise ChainError(f"{doing}: {detail}") from e


def _rejection(error: bt.ChainError) -> WeightsRejected:
    reason = _REASONS.get(error.name) or _REASONS_BY_CODE.get(error.code, "rejected")
    return WeightsRejected(reason, error.message)


class BittensorChain(Chain):
    """A subnet on a Bittensor network, read and written through the SDK.

    Args:
        network: ``finney``, ``test``, ``local`` or a ``ws://`` / ``wss://`` URL (only a label when
            ``path`` or ``substrate`` is given).
        netuid: the subnet.
        path: a local chain file; the SDK then runs against it through ``LocalSubstrate``.
        substrate: any object implementing the SDK's ``Substrate`` protocol, instead of a connection.

    Construction is offline: the connection opens on the first call.
    """

    def __init__(
        self,
        network: str = "finney",
        netuid: int = 1,
        *,
        path: str | Path | None = None,
        substrate=None,
    ):
        if path is not None and substrate is not None:
            raise ChainError("give BittensorChain a local chain path or a substrate, not both")
        self.network, self.netuid = network, netuid
        self._local = LocalChain(path, netuid) if path is not None else None
        if self._local is not None:
            substrate = LocalSubstrate(self._local)
        try:
            self._subtensor = bt.Subtensor(network, substrate=substrate)
        except ValueError as e:  # an unknown network name
            if self._local is not None:
                self._local.close()
            raise ChainError(str(e)) from e

    def round_clock(self, round_seconds: float) -> BlockClock:
        """Rounds of `round_seconds` counted in this chain's blocks: `round = block // blocks_per_round`."""
        block_seconds = self._local.params.block_seconds if self._local is not None else BLOCK_SECONDS
        return BlockClock(self._block_or_none, max(1, round(round_seconds / block_seconds)), block_seconds)

    def _block_or_none(self) -> int | None:
        """The block, or None during an outage: the round clock then runs on its estimate."""
        try:
            return self.block()
        except ChainError as error:
            log.warning("%s; the round clock continues on its estimate", error)
            return None

    def block(self) -> int:
        with _sdk_errors(f"cannot read the block number from {self.network}"):
            return self._subtensor.block

    def metagraph(self) -> Metagraph:
        with _sdk_errors(f"cannot read the metagraph of subnet {self.netuid} on {self.network}"):
            graph = self._subtensor.subnets.metagraph(self.netuid, commitments=False)
        if graph is None:
            raise ChainError(f"subnet {self.netuid} does not exist on {self.network}")
        neurons = graph.neurons
        return Metagraph(
            block=graph.block,
            netuid=self.netuid,
            uids=[n.uid for n in neurons],
            hotkeys=[n.hotkey for n in neurons],
            coldkeys=[n.coldkey for n in neurons],
            stake=[n.total_stake.rao / RAO_PER_UNIT for n in neurons],
            validator_permit=[n.validator_permit for n in neurons],
            incentive=[n.incentive for n in neurons],
            dividends=[n.dividends for n in neurons],
            emission=[n.emission.rao / RAO_PER_UNIT for n in neurons],
            consensus=[n.consensus for n in neurons],
            trust=[n.trust for n in neurons],
            # Not part of the runtime's metagraph record.
            validator_trust=[0.0] * len(neurons),
            # The chain stores 0 for "never set weights".
            last_update=[n.last_update or None for n in neurons],
        )

    def set_weights(self, keypair, uids: list[int], weights: list[float], version_key: int = 0) -> None:
        """Set weights through the SDK's ``SetWeights``; ``keypair`` is a hotkey keypair or a ``bt.Wallet``.

        Refusals become ``WeightsRejected``: the SDK's preflight and the chain's errors keep their reason
        (``not_registered``, ``no_permit``, ``rate_limited``, ...); weights the SDK cannot conform
        (all zero, negative, duplicate uids, fewer than ``min_allowed_weights``) are ``invalid_weights``.
        """
        try:
            intent = bt.SetWeights(
                netuid=self.netuid,
                uids=[int(u) for u in uids],
                weights=[float(w) for w in weights],
                version_key=version_key,
            )
            result = self._subtensor.execute(intent, keypair)
        except bt.ChainError as e:
            raise _rejection(e) from e
        except bt.RpcConnectionError as e:
            raise ChainError(f"cannot set weights on {self.network}: {e}") from e
        except bt.BittensorError as e:
            raise WeightsRejected("invalid_weights", str(e)) from e
        if not result.success:
            raise _rejection(result.error or bt.ChainError(result.message))

    def weights(self) -> dict[int, dict[int, float]]:
        with _sdk_errors(f"cannot read the weights of subnet {self.netuid} on {self.network}"):
            rows = self._subtensor.read("weights", netuid=self.netuid)
        return {uid: row for uid, row in rows.items() if row}

    def register(self, hotkey_ss58: str, coldkey_ss58: str) -> int:
        raise ChainError(
            f"registering on {self.network} burns TAO from the coldkey; use btcli: "
            f"`btcli subnets register --netuid {self.netuid} --network {self.network}`"
        )

    def add_stake(self, hotkey_ss58: str, amount: float) -> None:
        raise ChainError(
            f"staking on {self.network} spends the coldkey's TAO; use btcli: "
            f"`btcli stake add --netuid {self.netuid} --network {self.network}`"
        )

    def serve(self, hotkey_ss58: str, info: dict) -> None:
        raise ChainError(
            f"the bittensor backend does not publish contact info on {self.network}; "
            "peers announce their addresses on the DHT"
        )

    def served(self) -> dict[str, dict]:
        raise ChainError(
            f"the bittensor backend keeps no contact info on {self.network}; peers are found on the DHT"
        )

    def close(self) -> None:
        self._subtensor.close()
        if self._local is not None:
            self._local.close()
