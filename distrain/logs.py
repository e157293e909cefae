"""Logging for people and for services: `--log.format text` (the default) or `json`.

    configure_logging("json")          # one JSON object per line on stderr, no progress bar

Every record goes through one stderr handler: distrain's, hivemind's (which also relays its p2pd
daemon's), and Python warnings, so a service's log is uniformly one format. hivemind is kept at
WARNING unless `HIVEMIND_LOGLEVEL` says otherwise; distrain's level is `DISTRAIN_LOGLEVEL` (INFO).

Each round, nodes log one summary line (`round_summary`): readable text for people, and in JSON the
same numbers as keys of their own (`round`, `train_loss`, `bytes_sent`, ...) for log pipelines.
Progress bars (`progress_bar`) only show on an interactive terminal in text format: never in a swarm
child's log file, under pm2/systemd/docker, or in JSON.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timezone
from typing import NoReturn

from tqdm import tqdm

_show_progress = False


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, then the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        for key, value in getattr(record, "fields", {}).items():
            entry.setdefault(key, value)
        return json.dumps(entry, default=str)


def _text_formatter() -> logging.Formatter:
    return logging.Formatter("%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S")


FORMATS: dict[str, Callable[[], logging.Formatter]] = {"text": _text_formatter, "json": JsonFormatter}
"""Values of `--log.format`."""


def add_log_format_argument(parser) -> None:
    parser.add_argument(
        "--log.format",
        dest="log_format",
        choices=sorted(FORMATS),
        default="text",
        help="text for people (default), json for services: one object per line, no progress bar",
    )


def configure_logging(fmt: str = "text") -> None:
    """Route every log record of this process through one stderr handler in format `fmt`."""
    # Imported here rather than at the top: the training loop uses this module and needs no DHT.
    from hivemind.utils.logging import use_hivemind_log_handler

    global _show_progress
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATS[fmt]())
    logging.basicConfig(level=os.environ.get("DISTRAIN_LOGLEVEL", "INFO"), handlers=[handler], force=True)
    use_hivemind_log_handler("nowhere")  # hivemind's records propagate to our handler
    logging.getLogger("hivemind").setLevel(os.environ.get("HIVEMIND_LOGLEVEL", "WARNING"))
    logging.addLevelName(logging.WARNING, "WARNING")  # hivemind renames it WARN for every logger
    logging.captureWarnings(True)
    _show_progress = fmt == "text" and sys.stderr.isatty()
    if fmt == "json":
        os.environ.setdefault("WANDB_SILENT", "true")  # wandb's banner lines are not JSON


def progress_bar(steps: Iterable, description: str, enabled: bool = True) -> tqdm:
    """`steps` wrapped in a tqdm bar where one is wanted (see the module docstring), else passed through.

    :param enabled: False on processes that should stay quiet anyway (ranks other than 0)
    """
    return tqdm(
        steps,
        desc=description,
        unit="step",
        leave=False,
        dynamic_ncols=True,
        disable=not (_show_progress and enabled),
    )


# -- the per-round summary line ---------------------------------------------------------------------------


def _megabytes(value: float) -> str:
    return f"{value / 1e6:.2f} MB"


def _rejections(reasons: Iterable[str]) -> str | None:
    counts = sorted(Counter(reasons).items())
    if not counts:
        return None
    return f"rejected {sum(n for _, n in counts)} ({', '.join(f'{reason} {n}' for reason, n in counts)})"


def _submissions(submissions: dict[str, dict]) -> str:
    rejected = _rejections(s["reason"] for s in submissions.values() if s["reason"])
    return f"{len(submissions)} submissions" + (f", {rejected}" if rejected else "")


SUMMARY: dict[str, Callable] = {
    "initial": lambda initial: "initial θ" if initial else None,
    "train_loss": lambda loss: None if loss is None else f"loss {loss:.3f}",
    "inner_steps": lambda steps: f"{steps} steps",
    "tokens_per_second": lambda rate: f"{rate:,.0f} tok/s",
    "val_loss": lambda loss: f"val loss {loss:.3f}",
    "payload_bytes": lambda size: f"payload {_megabytes(size)}",
    "bytes_sent": lambda size: f"sent {_megabytes(size)}",
    "bytes_received": lambda size: f"received {_megabytes(size)}",
    "averaged": lambda n: f"{n} averaged",
    "exchange_seconds": lambda phases: f"exchange {sum(phases.values()):.2f} s",
    "rejected": lambda rejected: _rejections(rejected.values()),
    "submissions": _submissions,
    "scores": lambda scores: f"best score {max(scores.values()):.3f}" if scores else None,
    "weights": lambda weights: f"weights set ({len(weights)} nonzero)" if weights else None,
}
"""Event record key -> its part of the human summary (None: nothing to say); in this order."""


def text_table(headers: list[str], rows: list[list[str]], left: Collection[int] = (0,)) -> str:
    """Columns padded to their widest cell, two spaces apart: those at the indices in `left` (names)
    aligned left, the others (numbers) right."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i in left else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))
        )
        for line in [headers, *rows]
    )


def round_summary(record: dict) -> tuple[str, dict]:
    """A round's event record as one human line, and its scalar values as structured log fields."""
    parts = [SUMMARY[key](record[key]) for key in SUMMARY if key in record]
    message = f"round {record['round']}: " + ", ".join(part for part in parts if part)
    fields = {
        k: v
        for k, v in record.items()
        if k != "time" and (v is None or isinstance(v, (bool, int, float, str)))
    }
    return message, fields


def exit_now(code: int) -> NoReturn:
    """End a `python -m distrain ...` process with `code` once its command returned, skipping the
    interpreter's teardown: unloading torch and hivemind takes 0.9 s after a node on an idle 2-core
    machine, and 1.3-1.6 s while a swarm's peers all exit together, at the end of every swarm. Commands
    release what they hold (peer, p2pd, chain, tracker) in their own `finally` blocks; logs and stdio
    are flushed here, and atexit handlers do not run."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
