"""The bittensor SDK's ``Substrate`` protocol on top of a ``LocalChain``: the SDK's own code, offline.

``bt.Subtensor(substrate=LocalSubstrate(chain))`` runs the SDK's real metagraph decoding and its real
``SetWeights`` intent (registration and rate-limit preflight, ``max_weight_limit`` clip, u16 quantisation,
``min_allowed_weights``) against the local chain, so a validator takes the same path locally as on finney.

The SDK's ``Substrate`` hands back plain decoded values (SCALE decoding lives in its RPC transport, below
this seam), so answering with Python values is faithful. Only what the metagraph, weights and block paths
touch is simulated:

- reads at the head: the local chain keeps no history, so every ``block_hash`` reads the current state;
- storage: what ``SetWeights`` preflights, the ``Weights`` map, and the (empty) ``Commitments`` maps;
- runtime API: ``SubnetInfoRuntimeApi.get_metagraph``;
- writes: ``set_mechanism_weights``, checked by the local chain's rules and signed by the caller's key
  over the local chain's own payload (no SCALE extrinsic is built, so the SDK's transport signing is not
  exercised). Fees are zero. Commit-reveal is reported off: a timelocked commit only opens with a drand
  beacon signature, which does not exist offline.

Anything else raises the SDK's ``ChainError`` naming the item, which the SDK treats like any chain refusal
(its connect-time token-symbol scan, for one, is skipped, so nothing is cached for this chain).
"""

from typing import Any

from bittensor import Balance, ExtrinsicResult
from bittensor import ChainError as SdkChainError

from .base import SUBTENSOR_ERRORS, WeightsRejected
from .local import LocalChain
from .weights import U16_MAX

RAO_PER_UNIT = 10**9
"""Stake and emission travel in rao, a billionth of a token, as on the chain."""

SPEC_VERSION = 1
"""The runtime version this fake reports."""


def _u16(fraction: float) -> int:
    """A 0..1 score as the runtime's ``PerU16``."""
    return round(fraction * U16_MAX)


def _rao(amount: float) -> int:
    return round(amount * RAO_PER_UNIT)


class LocalSubstrate:
    """An SDK ``Substrate`` answering from ``chain``; it does not own the chain (close that yourself)."""

    def __init__(self, chain: LocalChain):
        self.chain = chain
        # Installed by the SDK's ``Client.connect``; display-only.
        self.token_symbols: dict[int, str] = {}
        self._storage = {
            ("SubtensorModule", "Uids"): self._uid,
            ("SubtensorModule", "CommitRevealWeightsEnabled"): lambda netuid: False,
            ("SubtensorModule", "WeightsSetRateLimit"): self._param("weights_rate_limit"),
            ("SubtensorModule", "MinAllowedWeights"): self._param("min_allowed_weights"),
            ("SubtensorModule", "MaxWeightsLimit"): self._param("max_weight_limit"),
            ("SubtensorModule", "SubnetEpochConsensus"): lambda netuid: "Yuma",
            ("SubtensorModule", "LastUpdate"): self._last_update,
        }
        self._maps = {
            ("SubtensorModule", "Weights"): self._weights,
            # No commitments on the local chain; the SDK's default metagraph reads them.
            ("Commitments", "CommitmentOf"): lambda netuid: [],
            ("Commitments", "RevealedCommitments"): lambda netuid: [],
        }

    # -- values, from the local chain ----------------------------------------------------------------

    def _param(self, name: str):
        return lambda netuid: getattr(self.chain.params, name) if netuid == self.chain.netuid else None

    def _uid(self, netuid: int, hotkey: str) -> int | None:
        return self.chain.metagraph().uid_of(hotkey) if netuid == self.chain.netuid else None

    def _last_update(self, netuid: int) -> list[int] | None:
        # The chain stores 0 for "never"; so does this view of it.
        if netuid != self.chain.netuid:
            return None
        return [block or 0 for block in self.chain.metagraph().last_update]

    def _weights(self, netuid: int) -> list[tuple[int, list[tuple[int, int]]]]:
        if netuid != self.chain.netuid:
            return []
        return [(uid, sorted(row.items())) for uid, row in self.chain.stored_weights().items()]

    def _metagraph(self, netuid: int) -> dict | None:
        """The runtime's ``Metagraph`` record, with the fields the local chain has."""
        if netuid != self.chain.netuid:
            return None
        graph = self.chain.metagraph()
        tempo = self.chain.params.tempo
        stake = [_rao(s) for s in graph.stake]
        return {
            "netuid": netuid,
            "name": list(b"distrain-local"),
            "block": graph.block,
            "tempo": tempo,
            # Local epochs are due at multiples of tempo.
            "last_step": graph.block - graph.block % tempo,
            "blocks_since_last_step": graph.block % tempo,
            "owner_hotkey": "",
            "owner_coldkey": "",
            "network_registered_at": 0,
            "num_uids": graph.n,
            "hotkeys": graph.hotkeys,
            "coldkeys": graph.coldkeys,
            "active": [True] * graph.n,
            "validator_permit": graph.validator_permit,
            "last_update": [block or 0 for block in graph.last_update],
            "emission": [_rao(e) for e in graph.emission],
            "incentives": [_u16(v) for v in graph.incentive],
            "dividends": [_u16(v) for v in graph.dividends],
            "consensus": [_u16(v) for v in graph.consensus],
            "trust": [_u16(v) for v in graph.trust],
            # One kind of stake here: all of it counts as the subnet's own (alpha).
            "alpha_stake": stake,
            "tao_stake": [0] * graph.n,
            "total_stake": stake,
        }

    @staticmethod
    def _lookup(table: dict, module: str, name: str):
        try:
            return table[module, name]
        except KeyError:
            raise SdkChainError(f"LocalSubstrate does not simulate {module}.{name}") from None

    # -- the Substrate protocol: lifecycle and display -------------------------------------------------

    def balance(self, rao: int, netuid: int = 0) -> Balance:
        return Balance(int(rao), netuid, self.token_symbols.get(netuid) if netuid else None)

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    # -- reads -------------------------------------------------------------------------------------

    async def block_number(self) -> int:
        return self.chain.block()

    async def finalized_block_number(self) -> int:
        return self.chain.block()

    async def block_hash(self, block: int | None = None) -> str:
        return f"0x{self.chain.block() if block is None else block:064x}"

    async def block_time(self) -> float:
        return self.chain.params.block_seconds

    async def spec_version(self) -> int:
        return SPEC_VERSION

    async def query(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> Any:
        return self._lookup(self._storage, module, storage_function)(*(params or []))

    async def query_map(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> list[tuple[Any, Any]]:
        return self._lookup(self._maps, module, storage_function)(*(params or []))

    async def runtime_call(self, api: str, method: str, params: list, block_hash: str | None = None) -> Any:
        if (api, method) != ("SubnetInfoRuntimeApi", "get_metagraph"):
            raise SdkChainError(f"LocalSubstrate does not simulate the runtime call {api}.{method}")
        return self._metagraph(*params)

    # -- calls and writes ----------------------------------------------------------------------------

    async def compose(self, call):
        # The SDK's generated (module, function, params) tuple is already all this chain needs.
        return call

    async def estimate_fee(self, call, keypair) -> Balance:
        return Balance(0)

    async def account_next_index(self, address: str) -> int:
        return 0

    async def submit(self, call, keypair, **_options) -> ExtrinsicResult:
        """Apply ``set_mechanism_weights`` with the local chain's rules; refusals come back as the SDK does."""
        module, function, params = call
        if (module, function) != ("SubtensorModule", "set_mechanism_weights"):
            message = f"LocalSubstrate does not simulate the call {module}.{function}"
            return ExtrinsicResult(success=False, message=message, error=SdkChainError(message))
        if params["netuid"] != self.chain.netuid or params["mecid"] != 0:
            message = f"subnet {params['netuid']} mechanism {params['mecid']} does not exist"
            return ExtrinsicResult(
                success=False, message=message, error=SdkChainError(message, "MechanismDoesNotExist")
            )
        try:
            self.chain.set_weights(keypair, params["dests"], params["weights"], params["version_key"])
        except WeightsRejected as e:
            name = SUBTENSOR_ERRORS.get(e.reason)
            return ExtrinsicResult(success=False, message=str(e), error=SdkChainError(str(e), name))
        return ExtrinsicResult(success=True, message="Success", block_hash=await self.block_hash())
