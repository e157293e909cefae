"""`distrain bench compress --json`: one JSON object, every codec measured, exactly one recommended."""

import argparse
import json

import pytest
import torch

from distrain.bench.commands import add_bench_commands
from distrain.bench.threads import one_thread
from distrain.compression import CODECS, RECOMMENDED

TINY = """
model: {context: 16, d_model: 32, n_layers: 1, n_heads: 2}
data: {max_corpus_mb: 0.25, page_tokens: 256}
inner: {batch_size: 4}
"""
FIELDS = {
    "codec",
    "bits_per_param",
    "ratio_vs_fp32",
    "compress_mb_s",
    "decompress_mb_s",
    "rel_error",
    "recommended",
}


def _run(argv, capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="distrain")
    add_bench_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args), capsys.readouterr().out


def test_bench_compress_json_contract(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY)
    flags = ["--recipe", str(tmp_path / "tiny.yaml"), "--steps", "2", "--repeat", "1"]
    status, out = _run(["bench", "compress", "--json", *flags], capsys)
    assert status == 0
    codecs = json.loads(out)["codecs"]  # stdout holds exactly one JSON object
    assert {row["codec"] for row in codecs} == {*CODECS, "hivemind-fp16"}
    assert all(
        row.keys() == FIELDS | {"rel_error_random"} for row in codecs
    )  # the contract, plus the control
    assert [row["codec"] for row in codecs if row["recommended"] is True] == [RECOMMENDED]
    by_name = {row["codec"]: row for row in codecs}
    assert by_name["fp32"]["rel_error"] == 0 and 31.9 < by_name["fp32"]["bits_per_param"] < 34
    assert by_name["hivemind-fp16"]["bits_per_param"] > 16 and by_name["hivemind-fp16"]["rel_error"] < 1e-3
    assert by_name[RECOMMENDED]["bits_per_param"] < by_name["templar"]["bits_per_param"]
    assert all(row["compress_mb_s"] > 0 and row["decompress_mb_s"] > 0 for row in codecs)

    status, out = _run(["bench", "compress", *flags], capsys)
    assert status == 0 and f"{RECOMMENDED} *" in out and "hivemind-fp16" in out


def test_measurements_run_on_one_thread_and_give_the_callers_count_back():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), one_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError("a measurement failed")
    assert torch.get_num_threads() == before
