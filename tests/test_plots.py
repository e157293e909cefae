"""The benchmark plots: what they show and that partial reports still draw."""

from distrain.plots import _shared_losses, plot_rounds


def _run(name: str, inner_steps: int, curve: list[float]) -> dict:
    return {"name": name, "inner_steps": inner_steps, "codec": "fp32", "curve": curve}


def test_the_loss_axis_leaves_out_what_only_the_shortest_rounds_reached():
    # ddp's first one-step rounds spike (8.4 at step 2 on the GPU run) before any H = 4 run has a point.
    ddp = _run("ddp", 1, [5.7, 4.1, 8.4, 4.0, 3.5, 3.3, 3.1, 3.0, 2.9])
    diloco = _run("diloco-h4", 4, [5.7, 3.6, 3.0])
    assert sorted(_shared_losses([ddp, diloco])) == [2.9, 3.0, 3.0, 3.1, 3.3, 3.5, 3.6]


def test_partial_reports_still_draw(tmp_path):
    # A run stopped in its first round has only the initial loss; a report stopped before any run has none.
    for runs in (
        [_run("ddp", 1, [5.7, 4.1, 3.9]), _run("recommended", 16, [5.7])],
        [_run("ddp", 1, [5.7])],
        [],
    ):
        path = tmp_path / "rounds.png"
        plot_rounds(runs, path)
        assert path.read_bytes().startswith(b"\x89PNG")
        path.unlink()
