"""Every file under launch/ is exercised, without the cluster, daemon or engine it is written for.

Shell scripts run for real with stand-ins for the programs they start (`distrain`, `accelerate`,
`srun`, `scontrol`, `getent`), which record their arguments; the recorded command lines are then
parsed by the real `accelerate launch` and `distrain` parsers and their recipes loaded. The pm2 file
is evaluated by node, the systemd unit by `systemd-analyze verify`, the compose file by
`docker compose config` where a compose plugin works and by pyyaml otherwise.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_recipes import check_accelerate_command, check_distrain_command

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
IN_CONTAINER = "/opt/distrain"  # where the Dockerfile and the systemd unit put the repository
SHELL_SCRIPTS = ["launch/local.sh", "launch/slurm/miner.sbatch", "launch/docker/entrypoint.sh"]
PEERS = "/ip4/203.0.113.10/tcp/31337/p2p/QmBootstrap /ip4/203.0.113.11/tcp/31337/p2p/QmSecond"


def test_every_launch_file_is_covered_here():
    # A new file under launch/ must come with a check in this module (and a line in this list).
    covered = {
        "launch/README.md",
        "launch/local.sh",
        "launch/slurm/miner.sbatch",
        "launch/pm2/ecosystem.config.js",
        "launch/docker/Dockerfile",
        "launch/docker/Dockerfile.dockerignore",
        "launch/docker/docker-compose.yml",
        "launch/docker/entrypoint.sh",
        "launch/systemd/distrain-miner.service",
        "launch/systemd/distrain-miner.env",
    }
    present = {
        str(p.relative_to(REPO)) for p in LAUNCH.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert present == covered


def test_readme_documents_every_launch_file_and_the_gpu_walkthrough():
    text = (LAUNCH / "README.md").read_text()
    for path in LAUNCH.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert path.name in text, f"launch/README.md does not mention {path.name}"
    assert "## From git clone to a running miner on a GPU box" in text


# -- stand-ins ---------------------------------------------------------------------------------------------


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


def _recorder(folder: Path, name: str) -> None:
    """A program `name` that writes its arguments, NUL-separated, to $RECORD_DIR/name[.$SLURM_NODEID]."""
    _stub(folder, name, f'printf "%s\\0" "$@" > "$RECORD_DIR/{name}${{SLURM_NODEID:+.$SLURM_NODEID}}"\n')


def _recorded(path: Path) -> list[str]:
    return path.read_bytes().decode().split("\0")[:-1]


def _run(command: list[str], env: dict, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def stubs(tmp_path):
    """(bin folder placed first on PATH, folder the stand-ins record into, base environment)."""
    bin_dir, record_dir = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record_dir.mkdir()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "RECORD_DIR": str(record_dir),
    }
    return bin_dir, record_dir, env


# -- shell scripts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_script_is_valid_bash_and_strict(script):
    path = REPO / script
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "set -euo pipefail" in path.read_text()
    assert os.access(path, os.X_OK), f"{script} is not executable"


def test_local_sh_starts_a_small_swarm(stubs):
    bin_dir, record_dir, env = stubs
    _recorder(bin_dir, "distrain")
    result = _run(["bash", str(LAUNCH / "local.sh")], env, cwd=LAUNCH)  # works from any folder
    assert result.returncode == 0, result.stderr
    args = check_distrain_command(_recorded(record_dir / "distrain"))
    assert (args.command, args.miners, args.validators, args.rounds, args.out) == (
        "swarm",
        2,
        1,
        3,
        "runs/local",
    )
    assert "runs/local/summary.json" in result.stdout


def test_local_sh_passes_settings_and_recipe_overrides(stubs):
    bin_dir, record_dir, env = stubs
    _recorder(bin_dir, "distrain")
    env.update(MINERS="4", FREERIDERS="1", ROUNDS="10", OUT="runs/bigger")
    result = _run(["bash", "launch/local.sh", "--inner.steps", "12"], env)
    assert result.returncode == 0, result.stderr
    args = check_distrain_command(_recorded(record_dir / "distrain"))
    assert (args.miners, args.freeriders, args.rounds, args.out) == (4, 1, 10, "runs/bigger")
    assert args.loaded_recipe.inner.steps == 12


def _slurm_env(stubs, tmp_path) -> dict:
    bin_dir, _, env = stubs
    _stub(bin_dir, "scontrol", 'test "$1 $2" = "show hostnames" && printf "gpu01\\ngpu02\\n"\n')
    # srun: drop its own options, then run the command once per node, as one task per node would.
    _stub(
        bin_dir,
        "srun",
        'while [[ "$1" == --* ]]; do shift; done\n'
        'for node in $(seq 0 $((SLURM_NNODES - 1))); do SLURM_NODEID=$node "$@" || exit; done\n',
    )
    _recorder(bin_dir, "accelerate")
    env.update(
        SLURM_JOB_ID="4242",
        SLURM_JOB_NODELIST="gpu[01-02]",
        SLURM_NNODES="2",
        SLURM_GPUS_ON_NODE="8",
        INITIAL_PEERS=PEERS,
        GENESIS="1767225600",
        OUT=str(tmp_path / "out"),
    )
    return env


def test_sbatch_starts_one_accelerate_launch_per_node_with_c10d_rendezvous(stubs, tmp_path):
    text = (LAUNCH / "slurm" / "miner.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=1" in text, "one launcher per node; it starts the GPU processes"
    env = _slurm_env(stubs, tmp_path)
    result = _run(["bash", "launch/slurm/miner.sbatch"], env)
    assert result.returncode == 0, result.stderr
    for node in (0, 1):
        launch, miner = check_accelerate_command(_recorded(stubs[1] / f"accelerate.{node}"))
        assert launch.use_fsdp, "the default recipe, llama-1b, is sharded"
        assert (launch.num_machines, launch.num_processes, launch.machine_rank) == (2, 16, node)
        assert (launch.rdzv_backend, launch.main_process_ip, launch.main_process_port) == (
            "c10d",
            "gpu01",
            29500,
        )
        assert miner.command == "miner"
        assert miner.initial_peers == PEERS.split()
        assert miner.genesis == 1767225600 and miner.out == env["OUT"]
        assert miner.loaded_recipe.run.run_id == "llama-1b"


def test_sbatch_refuses_to_start_without_the_runs_genesis(stubs, tmp_path):
    env = _slurm_env(stubs, tmp_path)
    del env["GENESIS"]
    result = _run(["bash", "launch/slurm/miner.sbatch"], env)
    assert result.returncode != 0 and "GENESIS" in result.stderr
    assert not list(stubs[1].iterdir()), "nothing may be launched"


# -- docker ------------------------------------------------------------------------------------------------


def _entrypoint(stubs, tmp_path, *command: str, **extra_env) -> subprocess.CompletedProcess:
    bin_dir, _, env = stubs
    _stub(bin_dir, "getent", 'test "$1 $2" = "hosts dht" && echo "172.20.0.2      dht"\n')
    _stub(bin_dir, "distrain", 'printf "%s\\n" "$@"\n')
    env.update(BOOTSTRAP_DIR=str(tmp_path), **extra_env)
    return _run(["bash", "launch/docker/entrypoint.sh", *command], env)


def test_entrypoint_points_peers_at_the_dht_service(stubs, tmp_path):
    (tmp_path / "maddrs").write_text("/ip4/0.0.0.0/tcp/31337/p2p/QmBoot\n")
    result = _entrypoint(stubs, tmp_path, "distrain", "miner", "--out", "/data/miner")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:5] == [
        "miner",
        "--out",
        "/data/miner",
        "--initial-peers",
        "/ip4/172.20.0.2/tcp/31337/p2p/QmBoot",
    ]


def test_entrypoint_uses_given_initial_peers_without_waiting(stubs, tmp_path):
    result = _entrypoint(stubs, tmp_path, "distrain", "validator", INITIAL_PEERS=PEERS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["validator", "--initial-peers", *PEERS.split()]


def test_entrypoint_runs_the_dht_and_forgets_the_stale_address(stubs, tmp_path):
    (tmp_path / "maddrs").write_text("/ip4/0.0.0.0/tcp/31337/p2p/QmOld\n")
    result = _entrypoint(stubs, tmp_path, "distrain", "dht", "--port", "31337")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["dht", "--port", "31337", "--maddrs-file", f"{tmp_path}/maddrs"]
    assert not (tmp_path / "maddrs").exists()
    check_distrain_command(result.stdout.split())


def _interpolate(value, env: dict):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, for the checks below."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match):
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


COMPOSE = LAUNCH / "docker" / "docker-compose.yml"


def _compose_plugin_works() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _compose_plugin_works(), reason="no docker compose plugin on this machine")
def test_docker_compose_config_accepts_the_file():
    env = {**os.environ, "DISTRAIN_GENESIS": "1767225600"}
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_compose_services_restart_and_mount_wallets_read_only():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"dht", "miner", "validator"}
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["build"]["dockerfile"] == "launch/docker/Dockerfile"
        assert (COMPOSE.parent / service["build"]["context"]).resolve() == REPO
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose["volumes"] or source.startswith(("./", "${")), volume
            if ":/wallets" in volume:
                assert volume.endswith(":ro"), f"{name} may write its wallet: {volume}"
    for name in ("miner", "validator"):
        assert any(v.endswith(":/wallets:ro") for v in services[name]["volumes"]), name
    assert not any("/wallets" in v for v in services["dht"].get("volumes", [])), "the DHT needs no keys"


def test_compose_commands_are_valid_distrain_commands():
    compose = yaml.safe_load(COMPOSE.read_text())
    with pytest.raises(KeyError, match="DISTRAIN_GENESIS"):
        _interpolate(compose["services"]["miner"]["command"], {})  # refuses to start without it
    env = {"DISTRAIN_GENESIS": "1767225600"}
    for name, service in compose["services"].items():
        command = _interpolate(service["command"], env)
        if command[0] == "accelerate":
            launch, args = check_accelerate_command(command[1:], mount=IN_CONTAINER)
            assert not launch.multi_gpu and not launch.use_fsdp
        else:
            assert command[0] == "distrain"
            args = check_distrain_command(command[1:], mount=IN_CONTAINER)
        assert args.command == name
        assert args.log_format == "json", f"{name} should log one JSON object per line"
        if name != "dht":
            # The entry point adds --initial-peers; the chain file lives on the shared volume.
            assert args.loaded_recipe.chain.path == "/chain/chain.sqlite"
            assert args.wallet_path == "/wallets" and args.host == "0.0.0.0"
            assert f"{args.port}:{args.port}" in service["ports"]
    # Every model folder the compose file can name has both recipes.
    for model in ("tiny-gpt", "llama-125m", "llama-1b"):
        for role in ("miner", "validator"):
            command = _interpolate(compose["services"][role]["command"], {**env, "DISTRAIN_MODEL": model})
            assert (REPO / command[command.index("--recipe") + 1].removeprefix(IN_CONTAINER + "/")).is_file()


def test_dockerfile_installs_pinned_cpu_torch_with_a_cuda_build_arg():
    text = (LAUNCH / "docker" / "Dockerfile").read_text()
    compose = yaml.safe_load(COMPOSE.read_text())
    torch_version = compose["services"]["miner"]["build"]["args"]["TORCH_VERSION"]
    assert f"ARG TORCH_VERSION={torch_version}" in text
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert 'pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"' in text
    assert re.search(r"^USER (?!root)\w+", text, re.MULTILINE), "the image must not run as root"
    assert 'ENTRYPOINT ["distrain-entrypoint"]' in text
    # Every COPY source exists in the build context (the repository root) and is not dockerignored.
    ignored = [
        line
        for line in (LAUNCH / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert {".git", ".venv"} <= set(ignored)
    for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE):
        for source in line.split()[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert source.split("/")[0] not in ignored


# -- pm2 ---------------------------------------------------------------------------------------------------

PM2 = "launch/pm2/ecosystem.config.js"


def _pm2_apps(env: dict) -> subprocess.CompletedProcess:
    script = f"const c = require('./{PM2}'); console.log(JSON.stringify(c.apps));"
    return _run(["node", "-e", script], {"PATH": os.environ["PATH"], "HOME": "/home/miner", **env})


@pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")
def test_pm2_apps_run_distrain_directly_with_restarts():
    result = _pm2_apps({"DISTRAIN_INITIAL_PEERS": PEERS, "DISTRAIN_GENESIS": "1767225600"})
    assert result.returncode == 0, result.stderr
    apps = {app["name"]: app for app in json.loads(result.stdout)}
    assert set(apps) == {"distrain-miner", "distrain-validator"}
    ports = set()
    for name, app in apps.items():
        assert app["interpreter"] == "none", "pm2 must not run distrain through node"
        assert app["autorestart"] is True and app["max_restarts"] >= 5
        assert app["kill_timeout"] >= 10_000, "time for distrain to stop p2pd before SIGKILL"
        assert app["env"]["WANDB_MODE"] == "offline"
        assert Path(app["cwd"]) == REPO
        if app["script"] == "accelerate":
            _, args = check_accelerate_command(app["args"])
        else:
            assert app["script"] == "distrain"
            args = check_distrain_command(app["args"])
        assert args.command == name.removeprefix("distrain-")
        assert args.initial_peers == PEERS.split() and args.genesis == 1767225600
        assert args.wallet_path == "/home/miner/.bittensor/wallets"
        assert args.log_format == "json", "a service logs one JSON object per line"
        ports.add(args.port)
    assert apps["distrain-miner"]["script"] == "accelerate", "the miner trains through accelerate"
    assert len(ports) == 2, "miner and validator on one box need two ports"


@pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")
def test_pm2_file_names_the_missing_setting():
    result = _pm2_apps({"DISTRAIN_GENESIS": "1767225600"})
    assert result.returncode != 0 and "DISTRAIN_INITIAL_PEERS" in result.stderr


# -- systemd -----------------------------------------------------------------------------------------------

UNIT = LAUNCH / "systemd" / "distrain-miner.service"
UNIT_ENV = LAUNCH / "systemd" / "distrain-miner.env"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_systemd_unit_restarts_and_kills_the_whole_group():
    unit = _unit()
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert service["KillMode"] == "control-group", "p2pd must die with the service"
    assert service["EnvironmentFile"] == "/etc/distrain/miner.env"
    assert "WANDB_MODE=offline" in service["Environment"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]


def test_systemd_exec_start_is_a_valid_command_with_the_example_env_file():
    settings = dict(
        line.split("=", 1) for line in UNIT_ENV.read_text().splitlines() if line and not line.startswith("#")
    )
    command = _unit()["Service"]["ExecStart"]
    used = set(re.findall(r"\$\{?(\w+)\}?", command))
    assert used <= set(settings), f"not in {UNIT_ENV.name}: {used - set(settings)}"
    # systemd: ${NAME} is one word, $NAME splits on whitespace.
    words = []
    for word in command.split():
        if re.fullmatch(r"\$\w+", word):
            words.extend(settings[word[1:]].split())
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: settings[m.group(1)], word))
    assert words[0] == f"{IN_CONTAINER}/.venv/bin/accelerate"
    _, args = check_accelerate_command(words[1:], mount=IN_CONTAINER)
    assert args.command == "miner" and args.out.startswith("/var/lib/distrain/")
    assert args.log_format == "json", "a service logs one JSON object per line"
    assert args.initial_peers == settings["INITIAL_PEERS"].split()


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing(tmp_path):
    # verify also checks that ExecStart's program exists: point it at this checkout's accelerate.
    accelerate = Path(sys.executable).parent / "accelerate"
    assert accelerate.exists()
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(f"{IN_CONTAINER}/.venv/bin/accelerate", str(accelerate)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # It exits 0 even on unknown keys or bad values, but says so on stderr.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
