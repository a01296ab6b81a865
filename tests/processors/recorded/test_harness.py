"""The recorded-pairs harness itself can fail: a test layer that cannot fail would prove nothing."""

from __future__ import annotations

import pytest
import requests

from .harness import Exchange, Match, Responder, compare

RECORDED = {"a": 1, "b": {"c": "x", "d": [1, 2]}, "e": "keep"}


def test_a_subset_of_the_recorded_body_agrees():
    assert compare({"a": 1, "b": {"d": [1, 2]}}, RECORDED, mode="subset") == []


@pytest.mark.parametrize("sent, problem", [
    ({"a": 2}, "a: sent 2, recorded 1"),
    ({"a": "1"}, "a: sent '1', recorded 1"),  # types matter: "1" is not 1
    ({"z": 1}, "z: sent 1, which the recorded request does not have"),
    ({"b": {"d": [1]}}, "b.d: sent [1], recorded [1, 2]"),
])
def test_differences_are_reported(sent, problem):
    assert problem in compare(sent, RECORDED, mode="subset")


def test_exact_mode_wants_every_field_and_allow_extra_only_the_named_ones():
    assert "e: recorded, not sent" in compare({"a": 1, "b": {"c": "x", "d": [1, 2]}}, RECORDED, mode="exact")
    assert compare({"a": 1, "z": 3}, RECORDED, mode="subset", allow_extra={"z": "documented elsewhere"}) == []
    assert compare({"b": {"z": 3}}, RECORDED, mode="subset", allow_extra={"z": "top level only"}) != []


def test_matches():
    assert compare({"n": "12345678901234567890"}, {"n": Match(max_len=20)}, mode="exact") == []
    assert compare({"n": "123456789012345678901"}, {"n": Match(max_len=20)}, mode="exact") != []
    assert compare({"t": ["customer"]}, {"t": Match(items_in=("customer", "paymentInstrument"))}, mode="exact") == []
    assert compare({"t": ["other"]}, {"t": Match(items_in=("customer",))}, mode="exact") != []


def test_the_responder_reports_wrong_requests_and_unrequested_exchanges():
    recorded = [
        Exchange(source="one", method="POST", path="/things", headers={"X-Key": "k"}, json={"a": 1},
                 required=("a",), response={"ok": True}),
        Exchange(source="two", method="GET", path="/things/1", response={}),
    ]
    with Responder(recorded) as responder:
        answer = requests.post(responder.url + "/things", json={"b": 1}, headers={"X-Key": "wrong"}, timeout=5)
        assert answer.json() == {"ok": True}  # the recorded answer is played even when the request differs
        with pytest.raises(AssertionError) as info:
            responder.verify()
    text = str(info.value)
    assert "header X-Key: sent 'wrong', recorded 'k'" in text
    assert "b: sent 1, which the recorded request does not have" in text
    assert "a: required, not sent" in text
    assert "recorded, never requested: GET /things/1 (two)" in text
