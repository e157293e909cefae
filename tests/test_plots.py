"""The benchmark plots: what they show and that partial reports still draw."""

import pytest

from distrain.plots import _loss_limits, plot_rounds


def _run(name: str, inner_steps: int, curve: list[float]) -> dict:
    return {"name": name, "inner_steps": inner_steps, "codec": "fp32", "curve": curve}


def test_the_loss_axis_leaves_out_what_only_the_shortest_rounds_reached():
    # ddp's first one-step rounds spike (8.4 at step 2 on the GPU run) before any H = 4 run has a point.
    ddp = _run("ddp", 1, [5.7, 4.1, 8.4, 4.0, 3.5, 3.3, 3.1, 3.0, 2.9])
    diloco = _run("diloco-h4", 4, [5.7, 3.6, 3.0])
    # From step 4 on: 2.9 ... 3.6, with 3% of that span either side.
    assert _loss_limits([ddp, diloco]) == pytest.approx((2.879, 3.621))
    assert _loss_limits([ddp]) == pytest.approx((2.735, 8.565))  # alone, every round counts


def test_partial_reports_still_draw(tmp_path):
    # A run stopped in its first round has only the initial loss; a report stopped before any run has
    # none; one round of each leaves one loss, nothing to span.
    partial = [_run("ddp", 1, [5.7, 4.1, 3.9]), _run("recommended", 16, [5.7])]
    one_loss = [_run("ddp", 1, [5.7, 4.1]), _run("recommended", 1, [5.7, 4.1])]
    for runs in (partial, one_loss, [_run("ddp", 1, [5.7])], []):
        path = tmp_path / "rounds.png"
        plot_rounds(runs, path)
        assert path.read_bytes().startswith(b"\x89PNG")
        path.unlink()
    assert _loss_limits(partial) is None and _loss_limits(one_loss) is None
