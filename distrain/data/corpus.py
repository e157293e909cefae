"""Byte-level corpora read from disk: the Python standard library by default, or a glob of text files.

Byte-level tokenisation (one token per byte, vocabulary 256) needs no tokenizer download and gives the
same tokens on every machine that reads the same files.
"""

from __future__ import annotations

import glob
import hashlib
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distrain.config import DataConfig, RecipeError


@dataclass
class Corpus:
    """The tokens of a run, plus what names them in reports."""

    tokens: np.ndarray
    """All tokens (uint8 bytes) of the corpus, files concatenated in sorted order."""
    files: int
    """Number of files read."""
    fingerprint: str
    """sha256 (16 hex) of the list of files and sizes read: figures name the data they ran on."""


def stdlib_files() -> list[Path]:
    """The `.py` files of the running interpreter's standard library, tests and site-packages excluded."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__"}
    files = []
    # os.walk lets us prune: site-packages (torch and friends) would otherwise cost seconds per start.
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in skip]
        files += [Path(folder, name) for name in names if name.endswith(".py")]
    return sorted(files)


def resolve_files(corpus: str) -> list[Path]:
    if corpus == "stdlib":
        files = stdlib_files()
    else:
        files = sorted(Path(p) for p in glob.glob(corpus, recursive=True) if Path(p).is_file())
    if not files:
        raise RecipeError(f"recipe key 'data.corpus' matches no files: '{corpus}'")
    return files


def load_corpus(cfg: DataConfig) -> Corpus:
    """Read files until `max_corpus_mb` is reached and return their bytes as tokens."""
    budget = int(cfg.max_corpus_mb * 2**20)
    chunks, listing, size = [], hashlib.sha256(), 0
    files = resolve_files(cfg.corpus)
    used = 0
    for path in files:
        data = path.read_bytes()[: budget - size]
        if not data:
            continue
        chunks.append(data)
        listing.update(f"{path.name}:{len(data)}\n".encode())
        size += len(data)
        used += 1
        if size >= budget:
            break
    tokens = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    return Corpus(tokens=tokens, files=used, fingerprint=listing.hexdigest()[:16])
