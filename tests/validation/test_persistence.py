"""ValidatorStore: a round is committed whole or not at all, whatever moment the validator dies at."""

from __future__ import annotations

import json

import torch

from distrain.validation.persistence import ValidatorStore, sketches_from_tensors, sketches_to_tensors


def records(round_: int) -> list[dict]:
    return [{"round": round_, "uid": uid, "hotkey": f"5Miner{uid}", "reason": None} for uid in (1, 2)]


def audited_rounds(store: ValidatorStore) -> list[int]:
    return [json.loads(line)["round"] for line in store.audit_path.read_text().splitlines()]


def run_round(store: ValidatorStore, round_: int) -> None:
    """What the validator does at the end of a round: audit, then commit."""
    store.audit(records(round_))
    store.commit(round_, {"scores": {"5Miner1": 0.1 * round_}}, f"theta after {round_}".encode())


def test_commit_then_load_round_trips(tmp_path):
    store = ValidatorStore(tmp_path / "state")
    assert store.load() is None
    run_round(store, 0)
    run_round(store, 1)
    state, checkpoint = ValidatorStore(tmp_path / "state").load()
    assert state == {"scores": {"5Miner1": 0.1}, "round": 1, "checkpoint": "checkpoint-1.safetensors"}
    assert checkpoint == b"theta after 1"
    assert audited_rounds(store) == [0, 0, 1, 1]


def test_checkpoints_of_older_rounds_are_removed(tmp_path):
    store = ValidatorStore(tmp_path)
    for round_ in range(3):
        run_round(store, round_)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2.safetensors"]


def test_a_round_audited_but_not_committed_is_cut_from_the_audit(tmp_path):
    store = ValidatorStore(tmp_path)
    run_round(store, 0)
    store.audit(records(1))  # killed here, before the commit of round 1
    state, _ = ValidatorStore(tmp_path).load()
    assert state["round"] == 0
    # Round 1 will be evaluated again and audited again: it must not be counted twice.
    assert audited_rounds(store) == [0, 0]


def test_torn_temporary_files_are_ignored(tmp_path):
    store = ValidatorStore(tmp_path)
    run_round(store, 0)
    # Killed while writing round 1's checkpoint, or while replacing state.json: only .tmp files are torn.
    (tmp_path / "checkpoint-1.safetensors.tmp").write_bytes(b"thet")
    (tmp_path / "state.json.tmp").write_text('{"scores": {"5Mi')
    state, checkpoint = ValidatorStore(tmp_path).load()
    assert (state["round"], checkpoint) == (0, b"theta after 0")


def test_a_torn_audit_record_does_not_stop_a_restart(tmp_path):
    store = ValidatorStore(tmp_path)
    run_round(store, 0)
    with store.audit_path.open("a") as file:
        file.write('{"round": 1, "uid": 1, "hot')
    state, _ = ValidatorStore(tmp_path).load()
    assert state["round"] == 0 and audited_rounds(store) == [0, 0]


def test_sketches_round_trip_through_checkpoint_tensors():
    sketches = {"5Miner1": torch.ones(4), "5Miner2": torch.zeros(4)}
    tensors = {"theta/w": torch.ones(2), **sketches_to_tensors(sketches)}
    restored = sketches_from_tensors(tensors)
    assert restored.keys() == sketches.keys()
    assert all(torch.equal(restored[h], sketches[h]) for h in sketches)
