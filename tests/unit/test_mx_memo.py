"""MxMemo keeps complete MX answers while their records live, and nothing else."""

from __future__ import annotations

from tlsprobe.mx import MxAnswer, MxHost, MxMemo, MxStatus

HOST = MxHost("mx.kommune.test", 10, ("127.0.0.2",))


def answer(domain: str = "kommune.test", status: MxStatus = MxStatus.OK, expires: float = 1060.0) -> MxAnswer:
    return MxAnswer(domain, status, (HOST,) if status is MxStatus.OK else (), "MX found", expires=expires)


def test_an_answer_is_reused_until_it_expires() -> None:
    memo = MxMemo()
    memo.put(answer(), now=1000.0)
    assert memo.get("kommune.test", now=1059.9) == answer()
    assert memo.get("kommune.test", now=1060.0) is None
    assert memo.get("kommune.test", now=1001.0) is None  # an expired answer is gone for good


def test_failures_and_answers_without_expiry_are_never_kept() -> None:
    memo = MxMemo()
    for status in (MxStatus.TEMPORARY, MxStatus.NO_DOMAIN, MxStatus.NULL_MX, MxStatus.NO_ADDRESS):
        memo.put(answer(status=status), now=1000.0)
        assert memo.get("kommune.test", now=1000.0) is None
    memo.put(answer(expires=0.0), now=1000.0)
    assert memo.get("kommune.test", now=1000.0) is None
    memo.put(answer(expires=999.0), now=1000.0)  # already past its TTL when it arrives
    assert memo.get("kommune.test", now=1000.0) is None


def test_a_flood_of_domains_does_not_grow_it_without_bound() -> None:
    memo = MxMemo(capacity=3)
    for n in range(10):
        memo.put(answer(f"d{n}.test"), now=1000.0)
        assert len(memo._answers) <= 3
    assert memo.get("d9.test", now=1000.0) is not None
