"""Recipes: YAML files that map one-to-one onto the dataclasses below.

A recipe says *what* is trained and *how*: every peer of a run must hold the same one, which is why
`Recipe.hash()` (with the release's `PROTOCOL`) travels in every record and payload and peers refuse
work from a different hash.
Where a process runs (wallet, ports, output folder) is not part of a recipe: those are command-line
flags of the roles.

    recipe = load_recipe("recipes/tiny-gpt/swarm.yaml", ["--inner.steps", "20"])

Every field has a docstring; `distrain recipe --explain` prints them.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import hashlib
import inspect
import json
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from distrain.tracking import TRACKERS, WANDB_MODES

PROTOCOL = 2
"""What peers must compute alike besides the recipe, in the recipe's hash: raised when a release changes it
(2: the fingerprint's projections), so that peers of different releases refuse each other's work as of
another recipe instead of failing every fingerprint check."""


class RecipeError(ValueError):
    """A recipe or override that cannot be used; the message names the offending key."""


@dataclass
class RunConfig:
    """Identity and clock of one training run."""

    run_id: str = "tiny-gpt-local"
    """Name of the run; records of other runs are ignored."""
    seed: int = 0
    """Seed of the initial parameters and of the public page assignment."""
    round_seconds: float = 16.0
    """Length of one round in seconds (local mode: wall clock since the run's genesis)."""
    publish_fraction: float = 0.55
    """Fraction of a round by which miners must have trained and published; the rest is slack."""
    max_payload_mb: float = 64.0
    """Largest payload a peer accepts, in MiB."""


@dataclass
class ModelConfig:
    """The network being trained; every peer builds the same one from the run seed."""

    arch: str = "tiny-gpt"
    """Model family: a key of `distrain.models.MODELS` (`tiny-gpt`, `transformers`)."""
    context: int = 64
    """Tokens per training sequence."""
    vocab_size: int = 256
    """Vocabulary size; 256 for the byte-level tokeniser."""
    d_model: int = 128
    """Width of the residual stream (tiny-gpt)."""
    n_layers: int = 2
    """Number of transformer blocks (tiny-gpt)."""
    n_heads: int = 4
    """Attention heads per block (tiny-gpt)."""
    hf_config: dict = field(default_factory=dict)
    """For `transformers`: keyword arguments of `transformers.AutoConfig.for_model` (needs `model_type`)."""


@dataclass
class DataConfig:
    """Where tokens come from and how they are cut into pages."""

    corpus: str = "stdlib"
    """`stdlib` (the Python standard library's source), or a glob of text files."""
    page_tokens: int = 1024
    """Tokens per page; pages are the unit of assignment and of evaluation."""
    pages_per_round: int = 16
    """Pages assigned to each miner per round (fewer pages than an inner round can digest overfit them)."""
    heldout_fraction: float = 0.1
    """Fraction of pages that are never assigned: validators evaluate on them."""
    max_corpus_mb: float = 8.0
    """Read at most this many MiB of text (keeps start-up fast on small machines)."""


@dataclass
class InnerConfig:
    """The local optimiser every miner runs between two exchanges (AdamW)."""

    steps: int = 24
    """Inner steps per round (DiLoCo's H)."""
    batch_size: int = 16
    """Sequences per inner step."""
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 0.1
    """AdamW weight decay."""
    beta1: float = 0.9
    """AdamW first-moment decay."""
    beta2: float = 0.95
    """AdamW second-moment decay."""
    grad_clip: float = 1.0
    """Clip the gradient norm of every inner step to this value (0 disables)."""


AVERAGES = ("all", "senders")
"""The values of `outer.average`."""


@dataclass
class OuterConfig:
    """The optimiser applied to the averaged pseudo-gradient (Nesterov SGD, as in DiLoCo)."""

    lr: float = 0.7
    """Outer learning rate."""
    momentum: float = 0.9
    """Outer momentum."""
    nesterov: bool = True
    """Use Nesterov momentum."""
    max_norm_ratio: float = 10.0
    """A delta whose norm exceeds this multiple of the round's median norm is rejected, not just clipped."""
    average: str = "all"
    """How the clipped deltas are averaged, coordinate by coordinate: `all` divides by the number of
    deltas (DiLoCo's mean); `senders` by the number of deltas whose decoded value there is not zero.
    With `topk` or `templar` those are the miners that sent the coordinate (Templar's rule: colliding
    indices averaged over the peers that chose them), so a value one miner of n sent keeps its full
    size where `all` divides it by n. Dense codecs decode nearly every value to non-zero, and
    `dct-sign` every value of a whole chunk, so for them the two barely differ. Validators score with
    the plain mean either way."""


@dataclass
class CompressionConfig:
    """How pseudo-gradients travel."""

    codec: str = "fp16"
    """A preset of `distrain.compression.CODECS`: `fp32`, `fp16`, `bf16` (dense), `int8` (blockwise),
    `topk-sign` (recommended: 4 of every 1024 values, a sign each, one magnitude per tensor, ~0.04
    bits/value; measured at `inner.steps: 16`, judged by `validator.proof_of_work: rerun`), `topk` (56 of
    every 4096 values, Rice-coded indices, 2-bit values, ~0.135 bits), `dct-sign` (16 of every 1024 DCT
    coefficients, a sign each, ~0.14 bits), `templar` (64 of 4096, 12-bit indices, 2-bit values),
    `lowrank` (rank-r int8 factors of each matrix). Pair a sparse preset with its outer step:
    `outer.momentum: 0`, `outer.nesterov: false` and `outer.lr` 3 (`topk-sign`: 10, `lowrank`: 1).
    `distrain bench compress` and `distrain bench convergence` measure them all."""
    error_decay: float = 0.7
    """Error feedback: the part of a delta that compression dropped is added back next round, times
    this decay; 0 disables it. Matters only for lossy codecs. 0.7 rather than Templar's 0.95: with
    `topk` at 25M parameters, final loss fell from 1.87 (0.95) to 1.75 (0.7), and 0.7 matched 0.95 on
    the default model (docs/performance.md)."""


PROOFS_OF_WORK = ("loss", "rerun")
"""The values of `validator.proof_of_work`."""


@dataclass
class ValidatorConfig:
    """How validators check and score submissions (not part of the recipe hash)."""

    eval_pages: int = 6
    """Held-out pages drawn afresh every round, from a seed miners cannot know, to score each submission."""
    val_pages: int = 12
    """Fixed held-out pages on which the shared model's validation loss is reported."""
    eval_scale: float = 0.25
    """Each submission is scored at θ_r − eval_scale·Δ: a partial step measures whether the update points
    downhill on unseen data, where a full local step late in training mostly measures its overshoot."""
    assignment_pages: int = 16
    """Pages of a miner's own assignment (and as many random training pages) for the proof-of-work check."""
    assignment_margin: float = 0.04
    """A miner must improve its own pages by this much more than random pages (nats), beyond what the
    other sampled miners' average delta does for those pages, or the round scores 0. With a sparse codec
    (`topk`, `templar`, `dct-sign`, `lowrank`) use 0.007: its payloads carry less of what is specific to
    the pages. In five default swarms 0.04 flagged 7 of 158 honest rounds and passed 5 of 40 of a miner
    training on other pages, where 0.03 flagged 2 and passed 10 (docs/performance.md, proof of work)."""
    proof_of_work: str = "loss"
    """How a miner shows it trained on its own pages, or its round scores 0 (`wrong_data`). `loss`: by
    `assignment_margin`. `rerun`: the validator reruns the start of the miner's round itself
    (`rerun_steps` inner steps from θ_r on the miner's pages and batch seed, and as many on random
    pages), and the delta must point closer to the first rerun than to the second by `rerun_margin`.
    It costs those steps for every evaluated miner (`max_evaluations` bounds them), but judges payloads
    too thin for `loss` (`topk-sign`; docs/performance.md, proof of work)."""
    rerun_steps: int = 16
    """Inner steps of each rerun (`proof_of_work: rerun`), at most the recipe's `inner.steps`."""
    rerun_margin: float = 0.06
    """`proof_of_work: rerun` asks cos(Δ, rerun on the miner's pages) ≥ (1 + this) · cos(Δ, rerun on
    random pages). With topk-sign, honest rounds measured 0.07-2.1 and those of a miner training on
    other pages −0.15-0.08 (docs/performance.md, proof of work)."""
    rerun_median_share: float = 0.5
    """`proof_of_work: rerun` also asks each margin to reach this share of the round's median margin. Honest
    margins grow as training goes on (0.06-0.14 in round 1, 0.3-0.5 in round 7) and a cheater's do not: in
    five swarms, 0 of 160 honest rounds flagged and 2 of 40 cheating ones passed with it, 0 and 10 with
    `rerun_margin` alone; 0.6 flagged 2 honest rounds (docs/performance.md, proof of work). Below
    `rerun_margin` it never lowers the bar, however many miners cheat."""
    copy_similarity: float = 0.95
    """Cosine similarity from which a submission counts as a copy (of this round) or a replay (of the last)."""
    max_evaluations: int = 32
    """At most this many submissions are evaluated per round; the least recently evaluated go first."""
    newcomer_slots: int = 8
    """Never-evaluated hotkeys admitted to the next aggregation set beside the miners with a positive score."""
    aggregation_sets: bool = True
    """Publish each round's aggregation set (who may enter the average). Off: miners average every
    submission that passes the cheap checks, for a trusted swarm or a benchmark of training alone."""
    ema: float = 0.5
    """Weight of the newest round in the exponential moving average of scores."""
    trust_ema: float = 0.2
    """Weight of the newest proof-of-work verdict (1 passed, 0 failed) in a miner's trust, which starts at 1
    and scales its weight (score × trust); 0 turns trust off. At 0.2 a miner that fails 6 rounds of 8 and
    passes 2 keeps 0.45 of its score's weight, and an honest one flagged once in 8 (a false flag rate the loss
    proof showed in some swarms) about 0.8 right after the flag and 0.92 four passes later
    (docs/performance.md, proof of work). A cheat that registers a new hotkey starts trusted again, but
    with a score of 0, and pays the registration for each one."""
    weights_interval: int = 2
    """Set weights on the chain every this many rounds."""
    max_weight: float = 1.0
    """No miner receives more than this share of the weights; the excess goes to the others."""
    burn: float = 0.0
    """Share of the weights given to `burn_uid` (the subnet owner) instead of to miners."""
    burn_uid: int = 0
    """The uid that receives the burned share."""


@dataclass
class ChainConfig:
    """Which chain pays the miners (not part of the recipe hash)."""

    backend: str = "local"
    """`local` (the embedded simulated subnet in a SQLite file) or `bittensor` (through the SDK)."""
    path: str = "chain.sqlite"
    """The local subnet's state file (with `bittensor` and no `network`: the SDK runs against this file)."""
    network: str = ""
    """`bittensor` backend: `finney`, `test`, `local` or a `ws://` URL; rounds then follow its blocks."""
    netuid: int = 1
    """Subnet id."""

    def connection(self) -> dict:
        """Keyword arguments of `distrain.chain.open_chain` for this section."""
        where = {"network": self.network} if self.network else {"path": self.path}
        return {"backend": self.backend, "netuid": self.netuid, **where}


@dataclass
class TrackingConfig:
    """Where each node sends its per-round metrics (not part of the recipe hash)."""

    backend: str = "none"
    """`none`, `wandb` or `tensorboard`: the tracker (accelerate's) that receives each round's event record
    as `train/*`, `comm/*`, `val/*` and `chain/*` metrics. The run id is kept in `--out`, so a restarted
    node continues its run."""
    project: str = "distrain"
    """wandb project; runs are grouped by `run.run_id` and named by role and hotkey."""
    mode: str = ""
    """wandb mode: `offline`, `online` or `disabled`; empty: the `WANDB_MODE` environment variable, else
    `offline` (upload later with `wandb sync`). `--wandb.mode MODE` is short for `--tracking.backend wandb
    --tracking.mode MODE`."""
    dir: str = ""
    """Folder for the tracker's files; empty: the node's `--out` folder (`wandb/`, `tensorboard/` in it)."""


@dataclass
class Recipe:
    """Everything a peer needs to know to join a run."""

    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    validator: ValidatorConfig = field(default_factory=ValidatorConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    # Sections that describe where or how a peer scores, pays and reports, not what is trained: two peers
    # may differ there and still train together.
    LOCAL_SECTIONS: typing.ClassVar[tuple[str, ...]] = ("validator", "chain", "tracking")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short hash of the training-relevant sections; peers refuse work carrying another."""
        shared = {k: v for k, v in self.to_dict().items() if k not in self.LOCAL_SECTIONS}
        shared["protocol"] = PROTOCOL
        canonical = json.dumps(shared, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def validate(self) -> None:
        """Reject values that parse but cannot work, naming the key."""
        checks = [
            ("run.round_seconds", self.run.round_seconds > 0),
            ("run.publish_fraction", 0 < self.run.publish_fraction < 1),
            ("run.max_payload_mb", self.run.max_payload_mb > 0),
            ("model.context", self.model.context >= 2),
            ("model.vocab_size", self.model.vocab_size >= 256),
            ("model.n_layers", self.model.n_layers >= 1),
            ("model.n_heads", self.model.n_heads >= 1),
            ("data.page_tokens", self.data.page_tokens > self.model.context),
            ("data.pages_per_round", self.data.pages_per_round >= 1),
            ("data.heldout_fraction", 0 < self.data.heldout_fraction < 1),
            ("data.max_corpus_mb", self.data.max_corpus_mb > 0),
            ("inner.steps", self.inner.steps >= 1),
            ("inner.batch_size", self.inner.batch_size >= 1),
            ("inner.lr", self.inner.lr > 0),
            ("outer.lr", self.outer.lr > 0),
            ("compression.error_decay", 0 <= self.compression.error_decay <= 1),
            ("outer.momentum", 0 <= self.outer.momentum < 1),
            ("outer.max_norm_ratio", self.outer.max_norm_ratio > 1),
            ("validator.eval_pages", self.validator.eval_pages >= 1),
            ("validator.val_pages", self.validator.val_pages >= 1),
            ("validator.eval_scale", 0 < self.validator.eval_scale <= 1),
            ("validator.assignment_pages", 1 <= self.validator.assignment_pages <= self.data.pages_per_round),
            ("validator.rerun_steps", self.validator.rerun_steps >= 1),
            ("validator.rerun_margin", self.validator.rerun_margin >= 0),
            ("validator.rerun_median_share", 0 <= self.validator.rerun_median_share < 1),
            ("validator.copy_similarity", 0 < self.validator.copy_similarity <= 1),
            ("validator.max_evaluations", self.validator.max_evaluations >= 1),
            ("validator.newcomer_slots", self.validator.newcomer_slots >= 0),
            ("validator.max_weight", 0 < self.validator.max_weight <= 1),
            ("validator.burn", 0 <= self.validator.burn < 1),
            ("validator.ema", 0 < self.validator.ema <= 1),
            ("validator.trust_ema", 0 <= self.validator.trust_ema <= 1),
            ("validator.weights_interval", self.validator.weights_interval >= 1),
        ]
        for key, ok in checks:
            if not ok:
                raise RecipeError(f"recipe key '{key}' has an invalid value: {_get(self, key)!r}")
        for key, value, choices in (
            ("outer.average", self.outer.average, AVERAGES),
            ("validator.proof_of_work", self.validator.proof_of_work, PROOFS_OF_WORK),
            ("tracking.backend", self.tracking.backend, ("none", *TRACKERS)),
            ("tracking.mode", self.tracking.mode, WANDB_MODES),
        ):
            if value not in choices:
                raise RecipeError(
                    f"recipe key '{key}' must be one of {', '.join(map(repr, choices))}, got {value!r}"
                )
        if self.chain.network and self.chain.backend != "bittensor":
            raise RecipeError("recipe key 'chain.network' needs 'chain.backend: bittensor'")
        if self.model.arch == "tiny-gpt" and self.model.d_model % self.model.n_heads:
            raise RecipeError("recipe key 'model.d_model' must be a multiple of 'model.n_heads'")


def _get(recipe: Recipe, dotted: str):
    section, name = dotted.split(".")
    return getattr(getattr(recipe, section), name)


def _section_types() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(Recipe)}  # type: ignore[misc]


def _coerce(key: str, value, annotation):
    """Convert a YAML or command-line value to the field's type, or raise naming the key."""
    origin = typing.get_origin(annotation) or annotation
    if origin is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif origin in (int, float):
        if isinstance(value, bool):
            raise RecipeError(f"recipe key '{key}' expects {origin.__name__}, got {value!r}")
        try:
            converted = origin(value)
        except (TypeError, ValueError):
            raise RecipeError(f"recipe key '{key}' expects {origin.__name__}, got {value!r}") from None
        if origin is int and isinstance(value, float) and value != converted:
            raise RecipeError(f"recipe key '{key}' expects an integer, got {value!r}")
        return converted
    elif origin is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if isinstance(value, dict):
            return value
    raise RecipeError(f"recipe key '{key}' expects {getattr(origin, '__name__', origin)}, got {value!r}")


def _suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def recipe_from_dict(data: dict) -> Recipe:
    """Build and validate a Recipe from nested dicts (parsed YAML)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"a recipe must be a mapping of sections, got {type(data).__name__}")
    sections = _section_types()
    recipe = Recipe()
    for section, values in data.items():
        if section not in sections:
            raise RecipeError(f"recipe section '{section}' is unknown{_suggest(section, sections)}")
        if not isinstance(values, dict):
            raise RecipeError(f"recipe section '{section}' must be a mapping, got {values!r}")
        for name, value in values.items():
            _set(recipe, f"{section}.{name}", value)
    recipe.validate()
    return recipe


def _set(recipe: Recipe, dotted: str, value) -> None:
    section, _, name = dotted.partition(".")
    sections = _section_types()
    if section not in sections or not name:
        raise RecipeError(f"recipe key '{dotted}' is unknown{_suggest(section, sections)}")
    target = getattr(recipe, section)
    hints = typing.get_type_hints(type(target))
    if name not in hints:
        raise RecipeError(f"recipe key '{dotted}' is unknown{_suggest(name, hints)}")
    setattr(target, name, _coerce(dotted, value, hints[name]))


def parse_overrides(argv: list[str]) -> dict[str, str]:
    """Turn `["--inner.steps", "20", "--model.arch=tiny-gpt"]` into `{"inner.steps": "20", ...}`."""
    overrides: dict[str, str] = {}
    items = list(argv)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--") or "." not in flag:
            raise RecipeError(f"unexpected argument '{flag}': recipe overrides look like --section.key VALUE")
        key, eq, value = flag[2:].partition("=")
        if not eq:
            if not items:
                raise RecipeError(f"recipe override '--{key}' needs a value")
            value = items.pop(0)
        overrides[key] = value
    return overrides


def load_recipe(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Recipe:
    """Read a YAML recipe (or the embedded defaults when `path` is None) and apply dotted overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe file '{path}' does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise RecipeError(
                f"recipe file '{path}' is not valid YAML: {str(error).splitlines()[0]}"
            ) from None
    return derive_recipe(recipe_from_dict(data), overrides)


def derive_recipe(recipe: Recipe, overrides: list[str] | dict | None) -> Recipe:
    """A validated copy of `recipe` with dotted overrides applied; `recipe` itself is left as it was."""
    derived = copy.deepcopy(recipe)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    for key, value in (overrides or {}).items():
        _set(derived, key, value)
    derived.validate()
    return derived


def explain() -> str:
    """Every recipe key with its default and docstring, for `distrain recipe --explain`."""
    lines = []
    for section, cls in _section_types().items():
        lines.append(f"{section}:  # {inspect.getdoc(cls)}")
        defaults = cls()
        for name, doc in _field_docs(cls).items():
            value = json.dumps(getattr(defaults, name))
            lines.append(f"  {name}: {value}")
            lines.extend(f"    # {line}" for line in textwrap.wrap(doc, 96))
    return "\n".join(lines)


def _field_docs(cls) -> dict[str, str]:
    """Attribute docstrings (the string literal after each field) read from the class source, each on one
    line: the source's line breaks and indentation are not part of the text."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())  # one line, single spaces
    return docs
