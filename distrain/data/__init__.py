"""Corpora, byte-level pages, and the public assignment of pages to miners."""

from distrain.data.corpus import Corpus, load_corpus
from distrain.data.pages import PageBook

__all__ = ["Corpus", "load_corpus", "PageBook"]
