"""The audit outbox keeps each message's events in order across a store outage, and loses none."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.audit_outbox import AuditOutbox
from gateway.events import AuditEvent, RecipientStatus, RecipientUpdated


class FlakyStore:
    """An audit sink that refuses while `down` (a unit-test stand-in for a database outage)."""

    def __init__(self) -> None:
        self.down = False
        self.events: list[AuditEvent] = []

    async def append(self, event: AuditEvent) -> None:
        if self.down:
            raise ConnectionError("audit database unreachable")
        self.events.append(event)

    async def close(self) -> None:
        return None


def update(message: str, n: int) -> RecipientUpdated:
    return RecipientUpdated(message, float(n), f"r{n}@x.test", RecipientStatus.DELIVERED, f"250 {n}")


def test_events_refused_during_an_outage_reach_the_store_in_order(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[AuditEvent], list[AuditEvent]]:
        store = FlakyStore()
        outbox = AuditOutbox(tmp_path / "audit-outbox", store)
        await outbox.emit(update("M1", 1))
        store.down = True
        await outbox.emit(update("M1", 2))
        await outbox.emit(update("M2", 3))
        store.down = False
        await outbox.emit(update("M1", 4))  # M1 has a backlog: queued behind it, not sent ahead
        await outbox.emit(update("M3", 5))  # M3 has none: straight through
        before = list(store.events)
        assert await outbox.replay() == 3
        return before, store.events

    before, after = asyncio.run(scenario())
    assert [e.smtp_response for e in before] == ["250 1", "250 5"]
    m1 = [e.smtp_response for e in after if e.id == "M1"]
    assert m1 == ["250 1", "250 2", "250 4"]
    assert sorted(e.smtp_response for e in after) == ["250 1", "250 2", "250 3", "250 4", "250 5"]
    assert list((tmp_path / "audit-outbox").iterdir()) == []


def test_a_new_outbox_replays_what_an_earlier_process_left(tmp_path: Path) -> None:
    async def scenario() -> list[AuditEvent]:
        store = FlakyStore()
        store.down = True
        first = AuditOutbox(tmp_path / "audit-outbox", store)
        await first.emit(update("M1", 1))
        await first.emit(update("M1", 2))
        (tmp_path / "audit-outbox" / "M1" / "00000003.json").write_text("{torn")
        store.down = False
        second = AuditOutbox(tmp_path / "audit-outbox", store)  # after a restart
        assert second.waiting == {"M1"}
        await second.replay()
        assert second.waiting == set()
        return store.events

    events = asyncio.run(scenario())
    assert [e.smtp_response for e in events] == ["250 1", "250 2"]
    assert [p.name for p in (tmp_path / "audit-outbox" / "M1").iterdir()] == ["00000003.unreadable"]
