"""`distrain validator report`: what a validator decided about each miner, read back from its audit trail.

The validator appends one record per registered miner per round to `<out>/state/audit.jsonl` (see
`Validator.audit_records`). This module turns that file into a per-miner table, a per-round matrix of
verdicts, the same aggregates as JSON, and a plot of scores over rounds:

    distrain validator report --out runs/swarm/validator-0 --last 12
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from distrain.logs import text_table

AUDIT_FILE = Path("state") / "audit.jsonl"
PASSED = "✓"
NOT_REGISTERED = "·"
NONE = "—"

CODES = {
    "missing": "miss",
    "wrong_recipe": "rcp",
    "wrong_round": "rnd",
    "not_registered": "unrg",
    "oversized": "big",
    "timeout": "tout",
    "unreachable": "unr",
    "not_found": "nf",
    "hash_mismatch": "hash",
    "undecodable": "undc",
    "malformed": "malf",
    "wrong_codec": "codc",
    "bad_count": "cnt",
    "index_out_of_range": "idx",
    "truncated": "trnc",
    "non_finite": "nan",
    "meta_mismatch": "meta",
    "wrong_base": "base",
    "zero_delta": "zero",
    "norm_outlier": "norm",
    "copy": "copy",
    "replayed": "rply",
    "wrong_data": "data",
}
"""Short codes for the matrix; every reason code a validator records (checks, fetch and payload errors)."""

REQUIRED_FIELDS = {"round": int, "uid": int, "hotkey": str}


class ReportError(Exception):
    """The audit trail cannot be read; the message is one line meant for the user."""


def code(reason: str | None) -> str:
    """The matrix cell for a reason: ✓ for a pass, else its short code (a new reason: its first 4 letters)."""
    return PASSED if reason is None else CODES.get(reason, reason[:4])


# -- reading ---------------------------------------------------------------------------------------------


def audit_path(target: Path) -> Path:
    """The audit file of a validator's `--out` folder, or `target` itself when it is the file."""
    return target / AUDIT_FILE if target.is_dir() else target


def read_audit(path: Path) -> list[dict]:
    """Every record of the audit file, in file order; ReportError names the first malformed line."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise ReportError(f"no audit trail at {path} (expected a validator's --out folder)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ReportError(f"{path} line {number} is not JSON: {error.msg}") from None
        problem = _problem(record)
        if problem:
            raise ReportError(f"{path} line {number} is not an audit record: {problem}")
        records.append(record)
    return records


def _problem(record: object) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    for field, kind in REQUIRED_FIELDS.items():
        if not isinstance(record.get(field), kind):
            return f"'{field}' missing or not {kind.__name__}"
    return None


# -- aggregating -----------------------------------------------------------------------------------------


def _miners(records: list[dict]) -> dict[tuple[int, str], list[dict]]:
    """Records per miner, ordered by uid. A miner is a (uid, hotkey) pair: scores are keyed by hotkey, so
    when a uid changes hands its new hotkey is a new miner starting from zero."""
    by_miner: dict[tuple[int, str], list[dict]] = {}
    for record in sorted(records, key=lambda r: r["round"]):
        by_miner.setdefault((record["uid"], record["hotkey"]), []).append(record)
    return dict(sorted(by_miner.items(), key=lambda item: (item[0][0], item[1][0]["round"])))


def summarise(records: list[dict], last: int) -> dict:
    """Per-miner aggregates and each miner's verdicts in the `last` rounds: the `--json` object."""
    rounds = sorted({r["round"] for r in records})
    recent = rounds[-last:]
    miners = []
    for (uid, hotkey), history in _miners(records).items():
        gains = [r["heldout_gain"] for r in history if r.get("heldout_gain") is not None]
        reasons = Counter(r.get("reason") for r in history if r.get("reason") is not None)
        miners.append(
            {
                "uid": uid,
                "hotkey": hotkey,
                "score": history[-1].get("score", 0.0),
                "last_round": history[-1]["round"],
                "rounds": len(history),
                "submitted": sum(r.get("reason") != "missing" for r in history),
                "evaluated": len(gains),
                "averaged": sum(bool(r.get("averaged")) for r in history),
                "reasons": dict(reasons.most_common()),
                "mean_heldout_gain": sum(gains) / len(gains) if gains else None,
                "last_reason": history[-1].get("reason"),
                # JSON keys are strings; a round the miner was not registered in is absent.
                "recent": {str(r["round"]): r.get("reason") for r in history if r["round"] in recent},
            }
        )
    return {
        "rounds": {"first": rounds[0], "last": rounds[-1], "count": len(rounds)} if rounds else None,
        "recent_rounds": recent,
        "miners": miners,
    }


def score_series(records: list[dict]) -> dict[str, list[tuple[int, float, bool]]]:
    """Per miner label: (round, score after it, whether its submission was refused) for the plot."""
    return {
        f"uid {uid} {hotkey[:8]}": [
            (r["round"], r.get("score", 0.0), r.get("reason") is not None) for r in history
        ]
        for (uid, hotkey), history in _miners(records).items()
    }


# -- rendering -------------------------------------------------------------------------------------------


def _number(value: float | None, sign: str = "") -> str:
    return NONE if value is None else f"{value:{sign}.4g}"


def render(summary: dict) -> str:
    """The summary as a person reads it: a per-miner table, then the verdict matrix, then a legend."""
    miners = summary["miners"]
    if not miners:
        return "no rounds audited yet"
    span = summary["rounds"]
    totals = Counter()
    for miner in miners:
        totals.update(miner["reasons"])
    reasons = [reason for reason, _ in totals.most_common()]
    shown = sorted(set(reasons) | {r for m in miners for r in m["recent"].values() if r is not None})
    legend = [f"{PASSED}=passed", f"{NOT_REGISTERED}=not registered", *(f"{code(r)}={r}" for r in shown)]
    return "\n".join(
        [
            f"rounds {span['first']}–{span['last']} ({span['count']} audited), {len(miners)} miners",
            "",
            _miner_table(miners, reasons),
            "sent: rounds it submitted in; eval: evaluated on held-out pages; avg: averaged into θ;",
            "mean gain: held-out loss improvement per evaluated round; last: latest verdict (· if gone)",
            "",
            f"last {len(summary['recent_rounds'])} rounds",
            _matrix(miners, summary["recent_rounds"]),
            "",
            "legend: " + "  ".join(legend),
        ]
    )


def _miner_table(miners: list[dict], reasons: list[str]) -> str:
    """One row per miner, with a count column for each reason that occurs (most frequent first)."""
    headers = ["uid", "hotkey", "score", "rounds", "sent", "eval", "avg", "mean gain", *map(code, reasons)]
    final_round = max(m["last_round"] for m in miners)
    rows = [
        [
            str(m["uid"]),
            m["hotkey"][:8],
            _number(m["score"]),
            str(m["rounds"]),
            str(m["submitted"]),
            str(m["evaluated"]),
            str(m["averaged"]),
            _number(m["mean_heldout_gain"], "+"),
            *(str(m["reasons"].get(reason, NONE)) for reason in reasons),
            code(m["last_reason"]) if m["last_round"] == final_round else NOT_REGISTERED,
        ]
        for m in miners
    ]
    return text_table([*headers, "last"], rows, left=(1,))  # the hotkey; numbers right


def _matrix(miners: list[dict], rounds: list[int]) -> str:
    """Verdict codes, one column per round; miners absent from all these rounds are left out."""
    rows = [
        [str(m["uid"]), m["hotkey"][:8]]
        + [code(m["recent"][str(r)]) if str(r) in m["recent"] else NOT_REGISTERED for r in rounds]
        for m in miners
        if m["recent"]
    ]
    return text_table(["uid", "hotkey", *map(str, rounds)], rows, left=(1,))


# -- the command -----------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of rounds, got {text!r}")
    return int(text)


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The parser of the report command, with `func` set to `cmd_report`."""
    parser = argparse.ArgumentParser(
        prog=prog, description="What a validator decided about each miner, from its audit trail."
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="the validator's --out folder, or its state/audit.jsonl"
    )
    parser.add_argument(
        "--png", type=Path, default=None, help="plot of scores over rounds (default: OUT/scores.png)"
    )
    parser.add_argument("--last", type=_positive, default=20, help="rounds shown in the matrix (default 20)")
    parser.add_argument("--json", action="store_true", help="print the aggregates as one JSON object")
    parser.set_defaults(func=cmd_report)
    return parser


def write_plot(records: list[dict], png: Path, title: str) -> None:
    """Scores over rounds as a PNG; ReportError when it cannot be written."""
    from distrain.plots import plot_validator_scores  # matplotlib is slow to import; only needed here

    try:
        plot_validator_scores(score_series(records), png, title)
    except OSError as error:
        raise ReportError(f"cannot write {png}: {error.strerror or error}") from None


def cmd_report(args: argparse.Namespace) -> int:
    """Print the report and write the plot; a problem with the files is one `error:` line, status 2."""
    path = audit_path(args.out)
    # An audit file given directly gets its plot beside it.
    png = args.png or (args.out if args.out.is_dir() else path.parent) / "scores.png"
    try:
        records = read_audit(path)
        if records:
            write_plot(records, png, title=f"Validator scores, {path}")
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = summarise(records, args.last)
    if args.json:
        print(json.dumps({"audit": str(path), **summary, "png": str(png) if records else None}, indent=2))
    else:
        print(f"audit trail {path}")
        print(render(summary))
        if records:
            print(f"scores over rounds: {png}")
    return 0
