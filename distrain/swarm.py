"""A whole subnet on one machine: local chain, DHT bootstrap, miners and validators on 127.0.0.1.

`run_swarm` creates throwaway wallets offline, registers them on a fresh local chain, starts every
peer as its own process (each in its own process group, so stopping a group also stops its p2pd),
hands them one genesis once all are ready, prints a line per round, and always stops what it started.
It writes `summary.json` and `loss.png` into the output folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from distrain.chain import LocalChain, SubnetParams, create_wallet
from distrain.clock import write_genesis
from distrain.config import Recipe, RecipeError

VALIDATOR_STAKE = 1000.0
GENESIS_LEAD_SECONDS = 0.5
"""How long after every peer is ready round 0 starts: they poll for the genesis file every 0.1 s."""
ROOT_CAUSE = re.compile(
    r"^(\[rank\d+\]: )?\w*(Error|Exception)\b|terminate called|what\(\):|Fatal Python error"
)
"""Log lines that say why a process died: an exception's last line, a C++ abort, a fatal interpreter error."""


@dataclass
class SwarmOptions:
    """Shape of a local swarm."""

    miners: int = 4
    """Honest miners."""
    validators: int = 1
    """Validators (each gets stake and a validator permit)."""
    freeriders: int = 0
    """Miners that publish a zero delta."""
    adversaries: list[str] = field(default_factory=list)
    """Cheating miners to add, one per name in `distrain.adversaries.BEHAVIOURS` (names may repeat)."""
    rounds: int = 10
    """Rounds to run before stopping everything."""
    out_dir: str = "runs/swarm"
    """Output folder: summary.json, loss.png, and one subfolder of logs per peer."""
    startup_timeout: float = 120.0
    """Seconds all peers together may take to start."""
    key_seed: str | None = None
    """Derive every wallet's keys from this seed and the member's name (the same hotkeys, so the same
    page assignments and batches, in every run of a benchmark); None: random keys."""
    shared_secret: bool = False
    """Give every validator the same evaluation secret, so that they score identically (for tests)."""
    miner_processes: int = 1
    """Processes of the first honest miner: above 1 it runs under `accelerate launch` as a data-parallel
    miner (DDP over gloo, on the CPU), as a multi-GPU miner would."""


@dataclass
class Member:
    """One process of the swarm."""

    name: str
    role: str
    """`validator`, `honest`, or the cheating behaviour it was started with."""
    hotkey: str
    out_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables of its own, over the swarm's."""
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.out_dir / "log.txt"

    def log_tail(self, lines: int = 15) -> str:
        return log_excerpt(self.log_path, lines)

    def events(self) -> list[dict]:
        """The events the member has written so far; a line it is still writing is left for later."""
        path = self.out_dir / "events.jsonl"
        if not path.exists():
            return []
        complete, _, _partial = path.read_text().rpartition("\n")
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


def log_excerpt(path: Path, lines: int) -> str:
    """The last `lines` of a peer's log, after the lines above them that say why it died: a launcher's
    report of a failed rank (torchrun's) is long enough to push what the rank printed out of the tail."""
    if not path.exists():
        return ""
    text = path.read_text(errors="replace").strip().splitlines()
    causes = [line for line in text[:-lines] if ROOT_CAUSE.search(line)][:8]
    return "\n".join([*causes, *(["..."] if causes else []), *text[-lines:], f"(whole log: {path})"])


class SwarmError(RuntimeError):
    """A swarm that could not start or finish; the message says which peer and why."""


class ProcessGroup:
    """Child processes, each in its own session; `stop()` terminates them and everything they spawned,
    including the sessions of their own (torchrun, under `accelerate launch`, starts each rank in one)."""

    def __init__(self):
        self.processes: list[subprocess.Popen] = []

    def start(self, args: list[str], log_path: Path, env: dict) -> subprocess.Popen:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w") as log:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.processes.append(process)
        return process

    def stop(self, grace: float = 10.0) -> None:
        # Walk the trees first: once a launcher exits, its ranks' sessions can no longer be found.
        trees = [_tree(process) for process in self.processes]
        # Each child leads a group of its own, which outlives it: a p2pd that a reaped child left is in it.
        leaders = {process.pid for process in self.processes}
        groups = leaders | {group for tree in trees for group in _groups(tree)}
        # SIGTERM the peers but not their p2pd daemons: each peer stops its own. A daemon signalled
        # with its peer dies first, and the peer's shutdown then waits on it (the node's leave timeout).
        for member in (member for tree in trees for member in tree if _name(member) != P2PD):
            with contextlib.suppress(psutil.Error):
                member.send_signal(signal.SIGTERM)
        deadline = time.time() + grace
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.time()))
        # SIGKILL every group even after a clean exit: a p2pd daemon may outlive its parent.
        for group in groups:
            _signal_group(group, signal.SIGKILL)
        for process in self.processes:
            process.wait()


P2PD = "p2pd"
"""The process name of hivemind's libp2p daemon, which every peer runs as a child."""


def _tree(process: subprocess.Popen) -> list[psutil.Process]:
    """`process` and all its living descendants."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(process.pid)
        return [root, *root.children(recursive=True)]
    return []


def _groups(tree: list[psutil.Process]) -> set[int]:
    """The process groups of a living tree (torchrun starts each rank in a group of its own)."""
    groups = set()
    for member in tree:
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            groups.add(os.getpgid(member.pid))
    return groups


def _name(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return process.name()
    return ""


def _signal_group(group: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _print_now(line: str) -> None:
    print(line, flush=True)


def _child_env() -> dict:
    env = dict(os.environ)
    # Many peers share few cores: one thread each avoids oversubscription thrash.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HIVEMIND_LOGLEVEL="ERROR", WANDB_MODE="disabled")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Swarm:
    """Everything one local swarm run owns."""

    def __init__(self, recipe: Recipe, options: SwarmOptions, echo=_print_now):
        if recipe.chain.network:
            raise RecipeError("a local swarm runs its own chain: leave 'chain.network' empty")
        self.options = options
        self.out = Path(options.out_dir).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in ("genesis.json", "summary.json"):
            (self.out / stale).unlink(missing_ok=True)
        self.recipe = recipe
        self.recipe.chain.path = str(self.out / "chain.sqlite")
        self.recipe_path = self.out / "recipe.yaml"
        self.recipe_path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        self.processes = ProcessGroup()
        self.members = self._create_members()
        self.maddrs_file = self.out / "dht" / "maddrs.txt"
        """Where the DHT bootstrap peer writes its multiaddrs, for the other peers to join through."""
        self.bootstrap_log = self.maddrs_file.with_name("log.txt")
        self.maddrs_file.unlink(missing_ok=True)
        self.bootstrap: subprocess.Popen | None = None
        self.genesis = self.initial_loss = None
        self.echo = echo
        """Where the per-round progress lines go (a benchmark printing JSON sends them to stderr)."""

    def _create_members(self) -> list[Member]:
        wallets = self.out / "wallets"
        roles = (
            [(f"validator-{i}", "validator") for i in range(self.options.validators)]
            + [(f"miner-{i}", "honest") for i in range(self.options.miners)]
            + [(f"freerider-{i}", "freerider") for i in range(self.options.freeriders)]
            + [(f"{name}-{i}", name) for i, name in enumerate(self.options.adversaries)]
        )
        chain_path = Path(self.recipe.chain.path)
        chain_path.unlink(missing_ok=True)
        members = []
        with LocalChain(
            chain_path, netuid=self.recipe.chain.netuid, params=SubnetParams(), create=True
        ) as chain:
            for name, role in roles:
                wallet = create_wallet(str(wallets), name, seed=self.options.key_seed)
                hotkey = wallet.hotkey.ss58_address
                chain.register(hotkey, wallet.coldkeypub.ss58_address)
                if role == "validator":
                    chain.add_stake(hotkey, VALIDATOR_STAKE)
                members.append(Member(name=name, role=role, hotkey=hotkey, out_dir=self.out / name))
        for member in members:
            for stale in ("events.jsonl", "ready"):
                (member.out_dir / stale).unlink(missing_ok=True)
            # A new swarm is a new run: miners and validators would otherwise resume the last one's state.
            for state in ("checkpoint", "state"):
                shutil.rmtree(member.out_dir / state, ignore_errors=True)
        return members

    # -- start -----------------------------------------------------------------------------------

    def start(self) -> None:
        # The bootstrap peer and the others start together: a peer reads the bootstrap's multiaddrs only
        # when it joins the DHT, after its imports, corpus and model (seconds a swarm on 2 cores).
        bootstrap = [sys.executable, "-m", "distrain.network", "--host", "127.0.0.1"]
        bootstrap += ["--maddrs-file", str(self.maddrs_file)]
        self.bootstrap = self.processes.start(bootstrap, self.bootstrap_log, _child_env())
        for member in self.members:
            command = "validator" if member.role == "validator" else "miner"
            args = [*self._launcher(member), command, "--recipe", str(self.recipe_path)]
            args += ["--wallet.path", str(self.out / "wallets"), "--wallet.name", member.name]
            args += ["--initial-peers-file", str(self.maddrs_file), "--out", str(member.out_dir)]
            args += ["--genesis-file", str(self.out / "genesis.json"), "--rounds", str(self.options.rounds)]
            args += ["--threads", "1"]
            if command == "miner":
                args += ["--behaviour", member.role]
            elif self.options.shared_secret:
                args += ["--secret-file", str(self.out / "validator-secret")]
            member.args = args
            member.process = self.processes.start(args, member.log_path, {**_child_env(), **member.env})
        self._wait_until_ready()
        # Everyone is up: round 0 starts in a moment, for all of them at once.
        self.genesis = time.time() + GENESIS_LEAD_SECONDS
        write_genesis(self.out / "genesis.json", self.genesis)

    def restart(self, member: Member) -> None:
        """Start a member again with the same arguments (after it crashed or was killed)."""
        member.process = self.processes.start(
            member.args, member.log_path.with_suffix(".restart.txt"), {**_child_env(), **member.env}
        )

    def _launcher(self, member: Member) -> list[str]:
        """`python -m distrain`, or `accelerate launch` of it for the first honest miner when it has
        several processes; those train on the CPU (DDP over gloo) even where there is a GPU."""
        if member.name != "miner-0" or self.options.miner_processes == 1:
            return [sys.executable, "-m", "distrain"]
        member.env["CUDA_VISIBLE_DEVICES"] = ""
        return [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", str(self.options.miner_processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()), "-m", "distrain",
        ]  # fmt: skip

    def _wait_until_ready(self) -> None:
        deadline = time.time() + self.options.startup_timeout
        waiting = list(self.members)
        while waiting:
            self._check_alive()
            waiting = [m for m in waiting if not (m.out_dir / "ready").exists()]
            if waiting and time.time() > deadline:
                names = ", ".join(m.name for m in waiting)
                if not self.maddrs_file.exists():
                    names = f"the DHT bootstrap peer (no {self.maddrs_file}), {names}"
                raise SwarmError(f"peers not ready after {self.options.startup_timeout:.0f} s: {names}")
            time.sleep(0.2)

    def _check_alive(self) -> None:
        if self.bootstrap and self.bootstrap.poll() is not None:  # it serves until the swarm stops it
            tail = log_excerpt(self.bootstrap_log, lines=5)
            raise SwarmError(
                f"the DHT bootstrap peer exited with status {self.bootstrap.returncode}:\n{tail}"
            )
        for member in self.members:
            code = member.process.poll() if member.process else None
            if code not in (None, 0):
                raise SwarmError(f"{member.name} exited with status {code}:\n{member.log_tail()}")

    # -- follow ----------------------------------------------------------------------------------

    def follow(self) -> None:
        """Print one line per round as the first validator reports it; return after the last round."""
        validator = self.members[0]
        last_round = self.options.rounds - 1
        round_seconds = self.recipe.run.round_seconds
        printed = -2
        while printed < last_round:
            self._check_alive()
            for event in validator.events():
                if event["round"] > printed:
                    printed = event["round"]
                    self.echo(self._progress_line(event))
            overdue = self.genesis + (printed + 3) * round_seconds + 30
            if time.time() > overdue:
                raise SwarmError(
                    f"{validator.name} reported no round {printed + 1} in time:\n{validator.log_tail()}"
                )
            time.sleep(0.3)
        # Every member stops by itself after the last round (it was given --rounds). Let it: its last
        # event gets written, and a crash on its way out is reported rather than hidden by the stop.
        deadline = time.time() + round_seconds
        while time.time() < deadline and any(m.process.poll() is None for m in self.members):
            time.sleep(0.3)
        self._check_alive()

    def _progress_line(self, event: dict) -> str:
        if event.get("initial"):
            self.initial_loss = event["val_loss"]
            return f"start      | val loss {event['val_loss']:.3f} | {len(self.members)} peers ready"
        elapsed = time.time() - self.genesis
        change = (event["val_loss"] - self.initial_loss) / self.initial_loss
        sent = self._bytes_sent_per_round().get(event["round"], 0.0)
        names = {m.hotkey: m.name.replace("miner-", "m") for m in self.members if m.role != "validator"}
        scores = " ".join(f"{names[h]}={s:.3f}" for h, s in sorted(event["scores"].items()) if h in names)
        return (
            f"round {event['round'] + 1:>2}/{self.options.rounds} | val loss {event['val_loss']:.3f} ({change:+.0%}) "
            f"| {sent / 1e6:.2f} MB sent/miner | averaged {event['averaged']} | {elapsed:.0f} s | scores {scores}"
        )

    def _bytes_sent_per_round(self) -> dict[int, float]:
        """Mean bytes each miner uploaded, by round (every miner's events read once)."""
        miners = [m for m in self.members if m.role != "validator"]
        totals: dict[int, float] = {}
        for event in (e for m in miners for e in m.events()):
            totals[event["round"]] = totals.get(event["round"], 0.0) + event["bytes_sent"]
        return {round_: total / len(miners) for round_, total in totals.items()}

    # -- finish ----------------------------------------------------------------------------------

    def run(self) -> dict:
        """Start every peer, follow the run to its last round, stop everything (whatever happened), and
        return the summary; raises SwarmError when a peer fails."""
        try:
            self.start()
            self.follow()
        finally:
            self.processes.stop()
        return self.summarise()

    def summarise(self) -> dict:
        from distrain.plots import plot_swarm

        validator_events = [e for e in self.members[0].events() if not e.get("initial")]
        with LocalChain(self.recipe.chain.path, netuid=self.recipe.chain.netuid) as chain:
            chain.run_epoch()  # turn the last weights into incentive now rather than at the next tempo
            metagraph = chain.metagraph()
            rows = chain.weights()
        validator_uids = [metagraph.uid_of(m.hotkey) for m in self.members if m.role == "validator"]
        weight_of = _stake_weighted_rows(rows, {uid: metagraph.stake[uid] for uid in validator_uids})
        final_scores = validator_events[-1]["scores"] if validator_events else {}
        sent = self._bytes_sent_per_round()
        summary = {
            "run_id": self.recipe.run.run_id,
            "recipe_hash": self.recipe.hash(),
            "initial_val_loss": self.initial_loss,
            "final_val_loss": validator_events[-1]["val_loss"] if validator_events else None,
            "rounds": [
                {
                    "round": e["round"],
                    "val_loss": e["val_loss"],
                    "bytes_sent_per_miner": sent.get(e["round"], 0.0),
                    "averaged": e["averaged"],
                }
                for e in validator_events
            ],
            "miners": [],
            "validators": [],
        }
        if summary["final_val_loss"] is not None:
            summary["loss_drop"] = 1 - summary["final_val_loss"] / self.initial_loss
        for member in self.members:
            uid = metagraph.uid_of(member.hotkey)
            entry = {"name": member.name, "hotkey": member.hotkey, "uid": uid, "role": member.role}
            if member.role == "validator":
                entry.update(stake=metagraph.stake[uid], dividends=metagraph.dividends[uid])
                summary["validators"].append(entry)
            else:
                entry.update(
                    score=final_scores.get(member.hotkey, 0.0),
                    weight=weight_of.get(uid, 0.0),
                    incentive=metagraph.incentive[uid],
                )
                summary["miners"].append(entry)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        plot_swarm(summary, validator_events, self.out / "loss.png")
        return summary


def _stake_weighted_rows(rows: dict[int, dict[int, float]], stakes: dict[int, float]) -> dict[int, float]:
    """The weight each uid receives, averaged over validators by stake (one validator: its own row)."""
    total = sum(stakes.values()) or 1.0
    combined: dict[int, float] = {}
    for validator, stake in stakes.items():
        for uid, weight in rows.get(validator, {}).items():
            combined[uid] = combined.get(uid, 0.0) + weight * stake / total
    return combined


def run_swarm(recipe: Recipe, options: SwarmOptions) -> int:
    """Run a local swarm end to end; returns a process exit code."""
    started = time.time()
    swarm = Swarm(recipe, options)
    print(
        f"swarm: {options.miners} miners, {options.freeriders} free-riders, {options.validators} validators, "
        f"{options.rounds} rounds of {recipe.run.round_seconds:.0f} s, recipe {recipe.hash()} -> {swarm.out}",
        flush=True,
    )
    try:
        summary = swarm.run()
    except SwarmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: stopping every peer", file=sys.stderr)
        return 130
    print(
        f"done in {time.time() - started:.0f} s: loss {summary['initial_val_loss']:.3f} -> "
        f"{summary['final_val_loss']:.3f}; summary.json and loss.png in {swarm.out}"
    )
    for miner in summary["miners"]:
        print(
            f"  {miner['name']:<12} {miner['role']:<10} uid {miner['uid']:<3} score {miner['score']:.4f} "
            f"weight {miner['weight']:.3f} incentive {miner['incentive']:.3f}"
        )
    return 0
