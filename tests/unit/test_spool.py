"""The spool: directories are the state machine; only acknowledged messages survive a crash."""

from __future__ import annotations

import os
import stat

import pytest

from gateway.journal import fold
from gateway.spool import Envelope, Kind, Spool, SpoolError, State, new_id


def _envelope(recipients=("a@example.dk",)) -> Envelope:
    return Envelope(id=new_id(), sender="s@firm.dk", recipients=tuple(recipients), received_at=1.0)


def test_accepted_message_is_in_incoming_with_envelope_and_private_modes(tmp_path):
    spool = Spool(tmp_path)
    spool.ensure()
    env = _envelope()
    spool.accept(env, b"Subject: x\r\n\r\nbody\r\n")
    assert spool.ids(State.INCOMING) == [env.id]
    folder = spool.dir(State.INCOMING, env.id)
    assert (folder / "message").read_bytes() == b"Subject: x\r\n\r\nbody\r\n"
    assert spool.envelope(env.id) == env
    assert stat.S_IMODE(os.stat(folder / "message").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "incoming").st_mode) == 0o700


def test_recover_removes_unacknowledged_tmp_but_keeps_the_rest(tmp_path):
    spool = Spool(tmp_path)
    spool.ensure()
    half = tmp_path / "tmp" / "HALFWRITTEN"
    half.mkdir()
    (half / "message").write_bytes(b"partial")
    env = _envelope()
    spool.accept(env, b"x\r\n")
    spool.recover()
    assert spool.ids(State.TMP) == []
    assert spool.ids(State.INCOMING) == [env.id]


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    spool = Spool(tmp_path)
    spool.ensure()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        spool.accept(_envelope(), b"x\r\n")
    assert spool.ids(State.TMP) == [] and spool.ids(State.INCOMING) == []


def test_journal_fold_keeps_final_status_and_ignores_a_torn_line(tmp_path):
    spool = Spool(tmp_path)
    spool.ensure()
    env = _envelope(("a@x.dk", "b@y.dk"))
    spool.accept(env, b"x\r\n")
    spool.append_many(env.id, State.INCOMING, [
        {"e": "decided", "rcpt": "a@x.dk", "action": "send", "protection": "tls-opportunistic", "payload": "message"},
        {"e": "status", "rcpt": "a@x.dk", "status": "delivered", "response": "250 ok"},
        {"e": "status", "rcpt": "a@x.dk", "status": "deferred", "response": "late duplicate"},
        {"e": "status", "rcpt": "b@y.dk", "status": "deferred", "response": "451"},
    ])
    with open(spool.dir(State.INCOMING, env.id) / "journal", "ab") as journal:
        journal.write(b'{"e": "status", "rcpt": "b@y.dk", "sta')  # crash mid-append
    state = fold(env.recipients, spool.journal(env.id, State.INCOMING))
    assert state.recipients["a@x.dk"].status.value == "delivered"
    assert state.recipients["b@y.dk"].status.value == "deferred"
    assert [r.address for r in state.pending()] == ["b@y.dk"]


def test_move_and_finish_drop_the_body_but_keep_the_record(tmp_path):
    spool = Spool(tmp_path)
    spool.ensure()
    env = _envelope()
    spool.accept(env, b"secret body\r\n")
    spool.move(env.id, State.INCOMING, State.ACTIVE)
    (spool.dir(State.ACTIVE, env.id) / "smime-1.eml").write_bytes(b"cms")
    spool.finish(env.id, State.ACTIVE)
    assert spool.locate(env.id) is State.DONE
    assert sorted(os.listdir(spool.dir(State.DONE, env.id))) == ["envelope.json", "journal"]
    with pytest.raises(SpoolError):
        spool.locate("NOPE")


def test_submit_marks_kind_and_origin(tmp_path):
    spool = Spool(tmp_path)
    spool.ensure()
    mid = spool.submit("", ["s@firm.dk"], b"dsn\r\n", kind=Kind.BOUNCE, origin="ABC")
    env = spool.envelope(mid)
    assert env.kind is Kind.BOUNCE and env.origin == "ABC" and env.recipients == ("s@firm.dk",)


def test_ids_sort_by_arrival():
    assert new_id(1000.0) < new_id(2000.0)
