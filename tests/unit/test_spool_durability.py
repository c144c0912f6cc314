"""Spool durability: what must reach the disk, and in which order, so that a power loss
never loses an acknowledged message. fsync is observed (the only witness short of
pulling the plug); the files and folders are real."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.journal import fold
from gateway.spool import Envelope, Spool, State, new_id


def _accepted(tmp_path: Path, recipients: tuple[str, ...] = ("a@x.dk",)) -> tuple[Spool, Envelope]:
    spool = Spool(tmp_path)
    spool.ensure()
    env = Envelope(id=new_id(), sender="s@firm.dk", recipients=recipients, received_at=1.0)
    spool.accept(env, b"Subject: x\r\n\r\nbody\r\n")
    return spool, env


@pytest.fixture
def fsynced(monkeypatch) -> list[str]:
    """The paths fsync was called on, in order."""
    seen: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def test_acceptance_fsyncs_both_files_their_folder_and_incoming(tmp_path, fsynced):
    spool, env = _accepted(tmp_path)
    incoming = str(tmp_path / "incoming")
    assert fsynced[-1] == incoming  # the rename into incoming/ is durable before 250
    work = str(tmp_path / "tmp" / env.id)
    assert fsynced[-4:-1] == [work + "/message", work + "/envelope.json", work]


def test_the_journal_is_named_durably_at_acceptance(tmp_path, fsynced):
    spool, env = _accepted(tmp_path)
    folder = spool.dir(State.INCOMING, env.id)
    assert (folder / "journal").read_bytes() == b""  # made before the folder fsync
    fsynced.clear()
    spool.append(env.id, State.INCOMING, {"e": "attempt", "at": 1.0, "next": 2.0})
    assert fsynced == [str(folder / "journal")]


def test_a_journal_created_later_makes_its_own_name_durable(tmp_path, fsynced):
    spool, env = _accepted(tmp_path)
    folder = str(spool.dir(State.INCOMING, env.id))
    os.unlink(folder + "/journal")  # a folder written before journals were made at acceptance
    fsynced.clear()
    spool.append(env.id, State.INCOMING, {"e": "attempt", "at": 1.0, "next": 2.0})
    assert fsynced == [folder + "/journal", folder]
    fsynced.clear()
    spool.append(env.id, State.INCOMING, {"e": "attempt", "at": 2.0, "next": 3.0})
    assert fsynced == [folder + "/journal"]  # the name is durable already


def test_a_record_appended_after_a_torn_line_is_not_lost(tmp_path):
    spool, env = _accepted(tmp_path)
    with open(spool.dir(State.INCOMING, env.id) / "journal", "ab") as journal:
        journal.write(b'{"e": "status", "rcpt": "a@x.dk", "sta')  # power loss mid-append
    spool.append(env.id, State.INCOMING, {"e": "status", "rcpt": "a@x.dk", "status": "delivered",
                                          "response": "250 ok"})
    state = fold(env.recipients, spool.journal(env.id, State.INCOMING))
    assert state.recipients["a@x.dk"].status.value == "delivered"


def test_recover_never_removes_a_tmp_name_that_is_also_acknowledged(tmp_path):
    # Only a file system that does not journal renames shows both; the message must survive it.
    spool, env = _accepted(tmp_path)
    twin = spool.dir(State.TMP, env.id)
    twin.mkdir()
    (twin / "message").write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    stray = spool.dir(State.TMP, new_id())
    stray.mkdir()
    spool.recover()
    assert spool.ids(State.INCOMING) == [env.id]
    assert twin.is_dir() and not stray.exists()


def test_a_fresh_spool_fsyncs_its_root_after_making_the_state_folders(tmp_path, fsynced):
    Spool(tmp_path / "spool").ensure()
    assert fsynced == [str(tmp_path / "spool")]
    fsynced.clear()
    Spool(tmp_path / "spool").ensure()
    assert fsynced == []
