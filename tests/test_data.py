"""Pages: deterministic public assignment, held-out pages never assigned, secret evaluation draws."""

import pytest
import torch

from distrain.config import DataConfig, RecipeError
from distrain.data import PageBook, load_corpus


@pytest.fixture(scope="module")
def book():
    cfg = DataConfig(max_corpus_mb=1.0, page_tokens=256)
    return PageBook(load_corpus(cfg), cfg, seed=7, context=32)


def test_stdlib_corpus_is_real_python_and_fingerprinted():
    corpus = load_corpus(DataConfig(max_corpus_mb=0.25))
    assert len(corpus.tokens) == int(0.25 * 2**20)
    assert b"def " in corpus.tokens.tobytes() and corpus.files > 0
    assert corpus.fingerprint == load_corpus(DataConfig(max_corpus_mb=0.25)).fingerprint


def test_assignment_is_deterministic_and_depends_on_hotkey_and_round(book):
    a = book.assignment("5Fhotkey", 3)
    assert a == book.assignment("5Fhotkey", 3)
    assert len(a) == book.cfg.pages_per_round and len(set(a)) == len(a)
    assert a != book.assignment("5Fhotkey", 4) or a != book.assignment("5Fother", 3)


def test_heldout_pages_are_never_assigned(book):
    heldout = set(book.heldout.tolist())
    assigned = {p for r in range(200) for p in book.assignment(f"hk{r % 7}", r)}
    assert heldout and not heldout & assigned
    assert set(book.validation_pages(10)) <= heldout
    assert set(book.draw_heldout(5, b"secret")) <= heldout


def test_evaluation_draws_depend_on_the_secret(book):
    assert book.draw_heldout(5, b"a") == book.draw_heldout(5, b"a")
    assert book.draw_heldout(5, b"a") != book.draw_heldout(5, b"b")


def test_sequences_and_batches_come_from_the_pages(book):
    seqs = book.sequences([book.heldout[0]])
    assert seqs.shape == (256 // 33, 33)
    page = book.pages[book.heldout[0]]
    assert torch.equal(seqs[0], page[:33])
    batch = book.sample_batch([5], 4, torch.Generator().manual_seed(0))
    text = book.pages[5].tolist()
    for row in batch.tolist():
        start = next(i for i in range(len(text)) if text[i : i + 33] == row)
        assert start >= 0


def test_tiny_corpus_is_a_clear_error(tmp_path):
    (tmp_path / "a.txt").write_text("x" * 300)
    cfg = DataConfig(corpus=str(tmp_path / "*.txt"), page_tokens=128)
    with pytest.raises(RecipeError, match="holds only 2 pages"):
        PageBook(load_corpus(cfg), cfg, seed=0, context=16)
    with pytest.raises(RecipeError, match="matches no files"):
        load_corpus(DataConfig(corpus=str(tmp_path / "*.md")))
