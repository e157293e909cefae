"""`distrain validator report` on a synthetic audit trail: the table, the matrix, the JSON, the plot, errors."""

from __future__ import annotations

import json

import pytest

from distrain.cli import build_parser, cmd_validator, main
from distrain.validation import report

HONEST, COPIER, OLD, NEW = "5HonestAAAA", "5CopierBBBB", "5OldCCCCCCC", "5NewDDDDDDD"


def record(round_, uid, hotkey, reason=None, gain=None, averaged=False, score=0.0) -> dict:
    """One line of the audit trail, as `Validator.audit_records` writes it."""
    evaluated = {} if gain is None else {
        "heldout_gain": gain, "own_gain": 2 * gain, "random_gain": gain / 2,
        "score_gain": 0.0 if reason else gain,
    }  # fmt: skip
    return {
        "round": round_, "uid": uid, "hotkey": hotkey, "reason": reason,
        "first_seen_s": None if reason == "missing" else 1.5, "size": None if reason == "missing" else 900,
        **evaluated, "averaged": averaged, "score": score,
    }  # fmt: skip


def audit_records() -> list[dict]:
    """Rounds 0-4: an honest miner; a copier that once sent its own work; uid 3 changing hands at round 2."""
    copier = [("copy", None), ("copy", None), (None, 0.01), ("missing", None), ("copy", None)]
    uid3 = [(OLD, "zero_delta", None), (OLD, "zero_delta", None), (NEW, None, 0.03), (NEW, "wrong_data", 0.01),
            (NEW, None, 0.02)]  # fmt: skip
    records = []
    for r in range(5):
        records.append(record(r, 1, HONEST, gain=0.02, averaged=True, score=0.01 * (r + 1)))
        reason, gain = copier[r]
        records.append(record(r, 2, COPIER, reason, gain, averaged=gain is not None, score=0.001 * r))
        hotkey, reason, gain = uid3[r]
        records.append(
            record(r, 3, hotkey, reason, gain, averaged=gain is not None and not reason, score=0.002)
        )
    return records


@pytest.fixture
def out(tmp_path):
    """A validator's --out folder holding the synthetic audit trail."""
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "audit.jsonl").write_text("".join(json.dumps(r) + "\n" for r in audit_records()))
    return tmp_path


def run_report(capsys, *args) -> tuple[int, str, str]:
    status = main(["validator", "report", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status: int, err: str, *fragments: str) -> None:
    assert status == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, err


def row(text: str, hotkey: str, after: str = "") -> list[str]:
    """The cells of the first table row for `hotkey` that comes after the line starting with `after`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    return next(line.split() for line in lines[start:] if hotkey[:8] in line)


def test_json_holds_every_aggregate(out, capsys):
    status, stdout, _ = run_report(capsys, "--out", out, "--json")
    assert status == 0
    summary = json.loads(stdout)
    assert summary.keys() == {"audit", "rounds", "recent_rounds", "miners", "png"}
    assert summary["rounds"] == {"first": 0, "last": 4, "count": 5}
    assert summary["recent_rounds"] == [0, 1, 2, 3, 4]
    assert [(m["uid"], m["hotkey"]) for m in summary["miners"]] == [
        (1, HONEST),
        (2, COPIER),
        (3, OLD),
        (3, NEW),
    ]
    copier = summary["miners"][1]
    assert copier == {
        "uid": 2,
        "hotkey": COPIER,
        "score": pytest.approx(0.004),
        "last_round": 4,
        "rounds": 5,
        "submitted": 4,
        "evaluated": 1,
        "averaged": 1,
        "reasons": {"copy": 3, "missing": 1},
        "mean_heldout_gain": pytest.approx(0.01),
        "last_reason": "copy",
        "recent": {"0": "copy", "1": "copy", "2": None, "3": "missing", "4": "copy"},
    }
    old, new = summary["miners"][2:]
    assert (old["last_round"], old["evaluated"], old["mean_heldout_gain"], old["reasons"]) == (
        1, 0, None, {"zero_delta": 2}
    )  # fmt: skip
    assert (new["rounds"], new["evaluated"], new["averaged"], new["reasons"]) == (3, 3, 2, {"wrong_data": 1})
    assert new["mean_heldout_gain"] == pytest.approx(0.02)
    assert summary["png"] == str(out / "scores.png")


def test_table_and_matrix(out, capsys):
    status, stdout, _ = run_report(capsys, "--out", out, "--last", 3)
    assert status == 0
    header = row(stdout, "hotkey", after="rounds 0–4")
    assert header == ["uid", "hotkey", "score", "rounds", "sent", "eval", "avg", "mean", "gain",
                      "copy", "zero", "miss", "data", "last"]  # fmt: skip
    assert row(stdout, COPIER) == [
        "2",
        COPIER[:8],
        "0.004",
        "5",
        "4",
        "1",
        "1",
        "+0.01",
        "3",
        "—",
        "1",
        "—",
        "copy",
    ]
    assert row(stdout, OLD)[-1] == "·"  # no longer registered
    assert row(stdout, NEW)[-1] == "✓"

    assert row(stdout, "hotkey", after="last 3 rounds") == ["uid", "hotkey", "2", "3", "4"]
    assert row(stdout, HONEST, after="last 3 rounds")[2:] == ["✓", "✓", "✓"]
    assert row(stdout, COPIER, after="last 3 rounds")[2:] == ["✓", "miss", "copy"]
    assert row(stdout, NEW, after="last 3 rounds")[2:] == ["✓", "data", "✓"]
    matrix = stdout[stdout.index("last 3 rounds") :]
    assert OLD[:8] not in matrix, "a miner gone before the last rounds has no row there"
    legend = next(line for line in stdout.splitlines() if line.startswith("legend:"))
    for entry in (
        "✓=passed",
        "·=not registered",
        "copy=copy",
        "miss=missing",
        "zero=zero_delta",
        "data=wrong_data",
    ):
        assert entry in legend


def test_a_uid_and_its_hotkey_changes_are_shown_in_the_matrix_as_not_registered(out, capsys):
    _, stdout, _ = run_report(capsys, "--out", out)
    assert row(stdout, OLD, after="last 5 rounds")[2:] == ["zero", "zero", "·", "·", "·"]
    assert row(stdout, NEW, after="last 5 rounds")[2:] == ["·", "·", "✓", "data", "✓"]


def test_the_plot_is_written_where_asked(out, capsys):
    assert run_report(capsys, "--out", out)[0] == 0
    assert (out / "scores.png").read_bytes().startswith(b"\x89PNG")
    audit = out / "state" / "audit.jsonl"
    assert run_report(capsys, "--out", audit)[0] == 0
    assert (out / "state" / "scores.png").read_bytes().startswith(b"\x89PNG"), "beside an audit file given"
    status, stdout, _ = run_report(capsys, "--out", out, "--png", out / "elsewhere.png")
    assert status == 0 and f"scores over rounds: {out / 'elsewhere.png'}" in stdout
    assert (out / "elsewhere.png").exists()


def test_an_empty_audit_trail_is_reported_as_such(tmp_path, capsys):
    (tmp_path / "audit.jsonl").write_text("")
    status, stdout, _ = run_report(capsys, "--out", tmp_path / "audit.jsonl")
    assert (status, stdout.splitlines()[-1]) == (0, "no rounds audited yet")
    assert not (tmp_path / "scores.png").exists()


@pytest.mark.parametrize(
    ("line", "fragments"),
    [
        ("{not json", ("line 2", "not JSON")),
        ("[1, 2]", ("line 2", "not a JSON object")),
        ('{"round": 0, "hotkey": "5X"}', ("line 2", "'uid'")),
    ],
)
def test_a_malformed_line_is_named(out, capsys, line, fragments):
    audit = out / "state" / "audit.jsonl"
    audit.write_text(audit.read_text().splitlines()[0] + "\n" + line + "\n")
    assert_one_line_error(*run_report(capsys, "--out", out)[::2], str(audit), *fragments)


def test_a_missing_or_unreadable_audit_trail_is_one_error_line(tmp_path, capsys):
    assert_one_line_error(
        *run_report(capsys, "--out", tmp_path)[::2], "no audit trail at", "state/audit.jsonl"
    )
    (tmp_path / "garbage.jsonl").write_bytes(b"\xff\xfe\x00binary")
    assert_one_line_error(*run_report(capsys, "--out", tmp_path / "garbage.jsonl")[::2], "cannot read")


def test_the_validator_itself_still_parses_with_recipe_overrides():
    node = ["validator", "--wallet.path", "w", "--wallet.name", "v", "--inner.steps", "20", "--out", "report"]
    args, rest = build_parser().parse_known_args(node)
    assert (args.func, args.out, rest) == (cmd_validator, "report", ["--inner.steps", "20"])
    args, rest = build_parser().parse_known_args(["validator", "report", "--out", "runs/v", "--last", "5"])
    assert (args.command, args.func, str(args.out), args.last, rest) == (
        "validator",
        report.cmd_report,
        "runs/v",
        5,
        [],
    )
