"""ScoreBook: the EMA of measured gains, who decays, who keeps, who is forgotten, trust from proof-of-work
verdicts, and weights from both."""

from __future__ import annotations

import pytest

from distrain.config import ValidatorConfig
from distrain.validation import ScoreBook

TRUST_EMA = ValidatorConfig.trust_ema  # the default


def test_scores_move_toward_each_rounds_gain_by_the_ema_factor():
    book = ScoreBook(ema=0.3, trust_ema=TRUST_EMA)
    book.update({"a": 0.1, "b": -0.2}, registered=["a", "b"])
    # From 0: 0.7·0 + 0.3·0.1; a negative gain counts as zero, never below.
    assert book.scores == pytest.approx({"a": 0.03, "b": 0.0})
    book.update({"a": 0.2, "b": 0.5}, registered=["a", "b"])
    assert book.scores == pytest.approx({"a": 0.7 * 0.03 + 0.3 * 0.2, "b": 0.3 * 0.5})


def test_registered_miners_without_a_gain_decay():
    book = ScoreBook(ema=0.3, trust_ema=TRUST_EMA, scores={"a": 0.5})
    book.update({}, registered=["a"])
    book.update({}, registered=["a"])
    assert book.scores["a"] == pytest.approx(0.5 * 0.7 * 0.7)


def test_skipped_miners_keep_their_score():
    book = ScoreBook(ema=0.3, trust_ema=TRUST_EMA, scores={"a": 0.5, "b": 0.5})
    book.update({}, registered=["a", "b"], skipped={"a"})
    assert book.scores == pytest.approx({"a": 0.5, "b": 0.35})


def test_a_new_hotkey_on_a_uid_starts_from_zero():
    book = ScoreBook(ema=0.3, trust_ema=TRUST_EMA, scores={"old": 0.5})
    book.update({"new": 0.1}, registered=["new"])  # the uid changed hands: "old" is no longer registered
    assert book.scores == pytest.approx({"new": 0.03})


def test_weights_are_normalised_scores():
    book = ScoreBook(ema=0.3, trust_ema=TRUST_EMA, scores={"a": 3.0, "b": 1.0})
    assert book.weights(["a", "b", "stranger"]) == pytest.approx([0.75, 0.25, 0.0])


def test_the_cap_hands_the_excess_to_the_others_in_proportion():
    book = ScoreBook(ema=0.3, trust_ema=TRUST_EMA, scores={"a": 6.0, "b": 3.0, "c": 1.0})
    # 0.6 → 0.5; its 0.1 goes 3:1 to b and c.
    assert book.weights(["a", "b", "c"], cap=0.5) == pytest.approx([0.5, 0.375, 0.125])


def test_the_cap_holds_after_redistribution_too():
    book = ScoreBook(ema=0.3, trust_ema=TRUST_EMA, scores={"a": 0.5, "b": 0.3, "c": 0.2})
    # a: 0.5 → 0.35 lifts b to 0.39, over the cap again; its 0.04 goes to c.
    assert book.weights(["a", "b", "c"], cap=0.35) == pytest.approx([0.35, 0.35, 0.30])


def test_burn_goes_to_its_uid_on_top_of_the_scaled_weights():
    book = ScoreBook(ema=0.3, trust_ema=TRUST_EMA, scores={"a": 6.0, "b": 3.0, "c": 1.0})
    weights = book.weights(["a", "b", "c"], cap=0.5, burn=0.1, burn_index=2)
    assert weights == pytest.approx([0.45, 0.3375, 0.1125 + 0.1])
    assert sum(weights) == pytest.approx(1.0)


def test_nothing_is_set_or_burned_while_nobody_has_earned():
    book = ScoreBook(ema=0.3, trust_ema=TRUST_EMA, scores={"a": 0.0})
    assert book.weights(["a", "b"], burn=0.5) == [0.0, 0.0]


def test_trust_follows_the_proof_of_work_verdicts_and_scales_the_weight():
    book = ScoreBook(ema=0.5, trust_ema=TRUST_EMA)
    book.update({"a": 0.5, "b": 0.5}, registered=["a", "b", "c"], verdicts={"a": True, "b": False})
    # A new hotkey starts trusted; one verdict moves it by TRUST_EMA; one never judged keeps none.
    assert book.trust == pytest.approx({"a": 1.0, "b": 1 - TRUST_EMA})
    book.update({}, registered=["a", "b"], skipped={"a", "b"})  # not sampled: trust stays too
    assert book.trust == pytest.approx({"a": 1.0, "b": 1 - TRUST_EMA})
    assert book.weights(["a", "b"]) == pytest.approx([1 / (2 - TRUST_EMA), (1 - TRUST_EMA) / (2 - TRUST_EMA)])
    book.update({}, registered=["a"])  # b's uid changed hands: its trust goes with its score
    assert book.trust == pytest.approx({"a": 1.0})


def test_trust_ema_0_turns_trust_off_also_over_a_state_saved_with_it_on():
    book = ScoreBook(ema=0.5, trust_ema=0.0)
    book.update({"a": 0.5, "b": 0.5}, registered=["a", "b"], verdicts={"a": True, "b": False})
    assert book.weights(["a", "b"]) == pytest.approx([0.5, 0.5])
    restored = ScoreBook(ema=0.5, trust_ema=0.0, scores={"a": 1.0, "b": 1.0}, trust={"a": 0.2})
    assert restored.weights(["a", "b"]) == pytest.approx([0.5, 0.5])


def test_a_late_pass_after_many_failed_proofs_earns_less_than_an_honest_record():
    """The swarm that made this test (CI, once in six runs): a miner training on other pages failed its
    proof in 6 of 8 rounds and passed rounds 3 and 7, whose held-out gain was the round's largest; with
    the score's EMA alone it ended with more weight than the honest miners' mean."""
    book = ScoreBook(ema=0.5, trust_ema=TRUST_EMA)
    for round_ in range(8):
        passed = round_ in (3, 7)
        gains = {"honest": 0.22, "cheat": 0.30 if passed else 0.0}
        book.update(gains, registered=["honest", "cheat"], verdicts={"honest": True, "cheat": passed})
    assert book.scores["cheat"] > 0.5 * book.scores["honest"]  # the score alone would pay it well...
    honest, cheat = book.weights(["honest", "cheat"])
    assert cheat < 0.5 * honest  # ... its trust does not
    assert book.trust["cheat"] == pytest.approx(0.45, abs=0.01)


def test_trust_survives_a_restart_with_the_scores():
    book = ScoreBook(ema=0.5, trust_ema=TRUST_EMA)
    book.update({"a": 0.2}, registered=["a"], verdicts={"a": False})
    again = ScoreBook(ema=0.5, trust_ema=TRUST_EMA, scores=book.scores, trust=book.trust)
    assert again.weights(["a", "b"]) == book.weights(["a", "b"])
    assert again.trust == book.trust and again.trust is not book.trust
