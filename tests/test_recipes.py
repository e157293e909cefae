"""Every recipe and accelerate config under recipes/ loads, says true things, and launches as documented.

- recipes: load with `load_recipe`, list every key with its meaning and default, hash the same for
  the miner and the validator of one run, and claim a parameter count that the built model has;
- accelerate configs: load with accelerate's own loader and pass `accelerate launch`'s own checks;
- recipes/README.md: every launch line parses with the real `accelerate launch` and `distrain` parsers.

The helpers `check_distrain_command` and `check_accelerate_command` are shared with test_launch.py.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import torch

from distrain.cli import build_parser, cmd_miner, cmd_recipe, cmd_swarm, cmd_validator
from distrain.config import Recipe, _section_types, load_recipe, parse_overrides
from distrain.models import build_model

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
ACCELERATE_CONFIGS = RECIPES / "accelerate_configs"
RECIPE_FILES = sorted(p for p in RECIPES.glob("*/*.yaml") if p.parent != ACCELERATE_CONFIGS)
NEW_RECIPE_FILES = [p for p in RECIPE_FILES if p.name != "swarm.yaml"]  # swarm.yaml keeps its own style
ROLE_PAIRS = sorted({p.parent for p in RECIPE_FILES if p.name in ("miner.yaml", "validator.yaml")})


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# -- helpers shared with test_launch.py ----------------------------------------------------------------


def resolve(path: str, root: Path = REPO, mount: str | None = None) -> Path:
    """A path as a launch file writes it, on this checkout (`mount` is where the repo sits in a container)."""
    if mount and path.startswith(mount.rstrip("/") + "/"):
        path = path[len(mount.rstrip("/")) + 1 :]
    return Path(path) if Path(path).is_absolute() else root / path


def check_distrain_command(argv: list[str], mount: str | None = None):
    """Parse `distrain ...` arguments with the real CLI parser; load the recipe with its overrides.

    A misspelt flag fails either in argparse or as an unknown recipe key, which is the point.
    Returns the parsed arguments.
    """
    args, rest = build_parser().parse_known_args(argv)
    takes_overrides = args.func in (cmd_miner, cmd_validator, cmd_swarm, cmd_recipe)
    assert takes_overrides or not rest, f"distrain {args.command} does not take {rest}"
    if takes_overrides:
        recipe_path = None
        if args.recipe is not None:
            recipe_path = resolve(args.recipe, mount=mount)
            assert recipe_path.is_file(), f"recipe {args.recipe} does not exist in the repository"
        args.loaded_recipe = load_recipe(recipe_path, parse_overrides(rest))
    return args


def check_accelerate_command(argv: list[str], mount: str | None = None):
    """Parse `accelerate launch ...` with accelerate's own parser, run its validation on the config file,
    and check the distrain command it starts. Returns (accelerate args, distrain args)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    assert argv[0] == "launch", argv
    args = launch_command_parser().parse_args(argv[1:])
    assert args.config_file, "an explicit --config_file: the box's default config may be anything"
    config = resolve(args.config_file, mount=mount)
    assert config.is_file(), f"accelerate config {args.config_file} does not exist"
    args.config_file = str(config)
    assert args.module and args.training_script == "distrain", "launch the package: -m distrain"
    _validate_launch_command(args)
    return args, check_distrain_command(args.training_script_args, mount=mount)


# -- accelerate configs ------------------------------------------------------------------------------------

EXPECTED_CONFIGS = {
    # file: (distributed_type, mixed_precision, use_cpu)
    "cpu.yaml": ("NO", "no", True),
    "single_gpu.yaml": ("NO", "bf16", False),
    "ddp.yaml": ("MULTI_GPU", "bf16", False),
    "fsdp.yaml": ("FSDP", "bf16", False),
}


def test_accelerate_configs_are_exactly_the_documented_ones():
    assert sorted(p.name for p in ACCELERATE_CONFIGS.glob("*.yaml")) == sorted(EXPECTED_CONFIGS)


@pytest.mark.parametrize("name", sorted(EXPECTED_CONFIGS))
def test_accelerate_config_loads_with_accelerates_own_loader(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    # The loader rejects unknown keys and bad enum values (ValueError), as `accelerate launch` does.
    config = load_config_from_file(str(ACCELERATE_CONFIGS / name))
    distributed_type, mixed_precision, use_cpu = EXPECTED_CONFIGS[name]
    assert isinstance(config, ClusterConfig)
    assert config.compute_environment.value == "LOCAL_MACHINE"
    assert config.distributed_type.value == distributed_type
    assert config.mixed_precision == mixed_precision
    assert config.use_cpu is use_cpu
    assert config.num_processes == (8 if distributed_type in ("MULTI_GPU", "FSDP") else 1)


@pytest.mark.parametrize("name", sorted(EXPECTED_CONFIGS))
def test_accelerate_config_passes_the_launch_commands_checks(name):
    launch, distrain = check_accelerate_command(
        ["launch", "--config_file", rel(ACCELERATE_CONFIGS / name), "-m", "distrain", "recipe"]
    )
    assert launch.multi_gpu is (name == "ddp.yaml")
    assert launch.use_fsdp is (name == "fsdp.yaml")
    assert distrain.command == "recipe"


def test_fsdp_options_are_ones_accelerate_knows_and_wrap_the_llama_blocks():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils.constants import FSDP2_STATE_DICT_TYPE, FSDP_AUTO_WRAP_POLICY

    fsdp = load_config_from_file(str(ACCELERATE_CONFIGS / "fsdp.yaml")).fsdp_config
    # `accelerate launch` copies fsdp_config.X onto its option of the same name, silently dropping
    # typos: so every key must be an option of the launcher.
    options = {action.dest for action in launch_command_parser()._actions}
    assert set(fsdp) <= options, set(fsdp) - options
    assert fsdp["fsdp_version"] == 2
    assert fsdp["fsdp_auto_wrap_policy"] in FSDP_AUTO_WRAP_POLICY
    assert fsdp["fsdp_state_dict_type"] in FSDP2_STATE_DICT_TYPE
    # The wrapped class must exist in the model the llama recipes build, or nothing gets sharded.
    classes = {
        type(m).__name__ for m in _meta_model(load_recipe(RECIPES / "llama-125m" / "miner.yaml")).modules()
    }
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] in classes


# -- recipes --------------------------------------------------------------------------------------------


def test_the_documented_recipes_exist():
    names = {rel(p) for p in RECIPE_FILES}
    for model in ("tiny-gpt", "llama-125m", "llama-1b"):
        assert {f"recipes/{model}/miner.yaml", f"recipes/{model}/validator.yaml"} <= names


@pytest.mark.parametrize("path", RECIPE_FILES, ids=rel)
def test_recipe_loads(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    if recipe.model.arch == "transformers":
        hf = recipe.model.hf_config
        assert hf.get("model_type") == "llama"
        assert hf.get("vocab_size") == recipe.model.vocab_size == 256, "byte-level: the only tokeniser"
        assert hf.get("max_position_embeddings") == recipe.model.context
        assert recipe.data.page_tokens % recipe.model.context == 0, "pages of whole sequences"


@pytest.mark.parametrize("folder", ROLE_PAIRS, ids=rel)
def test_miner_and_validator_of_a_run_train_the_same_thing(folder):
    # Peers refuse work carrying another recipe hash: a mismatch here would split the run.
    miner, validator = load_recipe(folder / "miner.yaml"), load_recipe(folder / "validator.yaml")
    assert miner.hash() == validator.hash()
    assert miner.to_dict() == validator.to_dict(), "the pair should differ only in its header comment"


@pytest.mark.parametrize("path", NEW_RECIPE_FILES, ids=rel)
def test_recipe_lists_every_key_with_its_meaning_and_default(path):
    lines = path.read_text().splitlines()
    for section, cls in _section_types().items():
        assert f"{section}:  # {cls.__doc__.strip()}" in lines, f"section {section} missing or undocumented"
        for field in dataclasses.fields(cls):
            index = next((i for i, line in enumerate(lines) if line.startswith(f"  {field.name}:")), None)
            assert index is not None, f"{section}.{field.name} is not listed"
            comments = []
            for line in reversed(lines[:index]):  # the comment block right above the key
                if not line.startswith("  #"):
                    break
                comments.append(line)
            assert any("Default:" in line for line in comments), f"{section}.{field.name} has no default"


PARAMETERS = re.compile(r"^# Parameters: ([\d,]+)", re.MULTILINE)


def _claimed_parameters(path: Path) -> int:
    match = PARAMETERS.search(path.read_text())
    assert match, f"{rel(path)} states no '# Parameters: N' line"
    return int(match.group(1).replace(",", ""))


def _meta_model(recipe: Recipe) -> torch.nn.Module:
    """The recipe's transformers model with shapes but no storage: a 1B model costs nothing."""
    import transformers

    options = dict(recipe.model.hf_config)
    config = transformers.AutoConfig.for_model(options.pop("model_type"), **options)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("path", NEW_RECIPE_FILES, ids=rel)
def test_claimed_parameter_count_is_right(path):
    recipe = load_recipe(path)
    if recipe.model.arch == "transformers":
        model = _meta_model(recipe)
    else:
        model = build_model(recipe.model, recipe.run.seed)
    actual = sum(p.numel() for p in model.parameters())
    claimed = _claimed_parameters(path)
    assert abs(claimed - actual) <= 0.1 * actual, f"{rel(path)} claims {claimed:,}, the model has {actual:,}"


def test_model_sizes_are_what_the_folder_names_say():
    sizes = {folder.name: _claimed_parameters(folder / "miner.yaml") for folder in ROLE_PAIRS}
    assert 0.9 * 125e6 <= sizes["llama-125m"] <= 1.1 * 125e6
    assert 0.9e9 <= sizes["llama-1b"] <= 1.1e9


# -- recipes/README.md ---------------------------------------------------------------------------------


def _readme_commands() -> list[list[str]]:
    """Indented command lines of recipes/README.md, with the placeholders filled in."""
    text = (RECIPES / "README.md").read_text()
    text = text.replace("MADDR", "/ip4/203.0.113.10/tcp/31337/p2p/QmPeer").replace("GENESIS", "1767225600")
    return [
        shlex.split(line.strip(), comments=True)
        for line in text.splitlines()
        if line.startswith("    ") and line.strip().split(" ")[0] in ("distrain", "accelerate")
    ]


def test_readme_launch_lines_parse_with_the_real_parsers():
    commands = _readme_commands()
    launched = set()
    for argv in commands:
        if argv[0] == "accelerate":
            _, args = check_accelerate_command(argv[1:])
        else:
            args = check_distrain_command(argv[1:])
        if args.recipe:
            launched.add(args.recipe)
    # One launch line per recipe.
    assert launched == {rel(p) for p in RECIPE_FILES}


def test_readme_names_every_accelerate_config():
    text = (RECIPES / "README.md").read_text()
    for name in EXPECTED_CONFIGS:
        assert f"accelerate_configs/{name}" in text or f"`{name}`" in text, name
