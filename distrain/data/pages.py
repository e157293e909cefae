"""Pages: fixed-size slices of the corpus, assigned publicly to `(hotkey, round)`, some held out.

- A page is `page_tokens` consecutive tokens. Page ids are stable for a given corpus.
- A fixed, seeded fraction of pages is **held out**: no assignment ever gives them out, so a miner
  cannot have trained on them. Validators evaluate there, drawing pages with a seed of their own.
- The **assignment** of a miner in a round is a public deterministic function of
  `(run seed, hotkey, round)`: anyone can recompute which pages a miner should have trained on.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from distrain.config import DataConfig, RecipeError
from distrain.data.corpus import Corpus


def _rng(*parts) -> np.random.Generator:
    """A generator seeded by a hash of `parts`, identical on every machine and Python version."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class PageBook:
    """Splits a corpus into pages and answers which pages serve which purpose."""

    def __init__(self, corpus: Corpus, cfg: DataConfig, seed: int, context: int):
        self.cfg, self.seed, self.context = cfg, seed, context
        self.n_pages = len(corpus.tokens) // cfg.page_tokens
        n_heldout = max(2, int(self.n_pages * cfg.heldout_fraction))
        if self.n_pages < n_heldout + cfg.pages_per_round:
            raise RecipeError(
                f"the corpus holds only {self.n_pages} pages of {cfg.page_tokens} tokens: "
                "lower 'data.page_tokens' or use a larger 'data.corpus'"
            )
        usable = corpus.tokens[: self.n_pages * cfg.page_tokens]
        self.pages = torch.from_numpy(usable.astype(np.int64)).view(self.n_pages, cfg.page_tokens)
        order = _rng("heldout", seed).permutation(self.n_pages)
        self.heldout = np.sort(order[:n_heldout])
        self.train = np.sort(order[n_heldout:])
        # Validators report the shared model's loss on a fixed slice of the held-out pages, so the
        # numbers of different rounds are comparable.
        self.validation = order[:n_heldout]

    def assignment(self, hotkey: str, round_: int) -> list[int]:
        """The training pages of `hotkey` in `round_`: public, deterministic, never held out."""
        picks = _rng("assign", self.seed, hotkey, round_).choice(
            len(self.train), size=self.cfg.pages_per_round, replace=False
        )
        return sorted(int(self.train[i]) for i in picks)

    def validation_pages(self, count: int) -> list[int]:
        """A fixed list of held-out pages for comparable validation losses across rounds."""
        return [int(p) for p in self.validation[:count]]

    def draw_heldout(self, count: int, secret: bytes) -> list[int]:
        """`count` held-out pages chosen by a validator's secret: miners cannot predict them."""
        picks = _rng("eval", secret.hex()).choice(
            len(self.heldout), size=min(count, len(self.heldout)), replace=False
        )
        return sorted(int(self.heldout[i]) for i in picks)

    def random_train_pages(self, count: int, secret: bytes) -> list[int]:
        """`count` training pages chosen by a secret: a baseline to compare a miner's own pages against."""
        picks = _rng("random", secret.hex()).choice(len(self.train), size=count, replace=False)
        return sorted(int(self.train[i]) for i in picks)

    def sequences(self, page_ids: list[int]) -> torch.Tensor:
        """Non-overlapping windows of `context + 1` tokens cut from the pages, for evaluation."""
        window = self.context + 1
        per_page = self.cfg.page_tokens // window
        cut = self.pages[page_ids, : per_page * window]
        return cut.reshape(-1, window)

    def sample_batch(self, page_ids: list[int], batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A training batch of random windows inside the given pages."""
        window = self.context + 1
        rows = torch.tensor(page_ids)[torch.randint(len(page_ids), (batch_size,), generator=generator)]
        starts = torch.randint(self.cfg.page_tokens - window + 1, (batch_size,), generator=generator)
        offsets = starts[:, None] + torch.arange(window)[None, :]
        return self.pages[rows[:, None], offsets]
