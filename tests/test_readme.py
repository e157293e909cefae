"""The README's quick start is exactly two commands, and CI runs the second one verbatim."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line.strip()[2:] for line in section.splitlines() if line.strip().startswith("$ ")]


def test_quick_start_is_two_commands_and_ci_runs_the_test_one():
    swarm, tests = quick_start_commands()
    assert "distrain swarm" in swarm
    assert "pytest" in tests
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines
