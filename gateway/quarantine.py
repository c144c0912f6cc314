"""Held messages: stored for the gateway's user alone, released, deleted or purged on record.

A message is held when no protection its policy allows is possible for some of
its recipients. The copy is the most sensitive thing the gateway keeps at rest,
so (GDPR art. 32, art. 5(1)(e) storage limitation):

- each held message is a folder `<quarantine path>/<id>/` (0700) holding
  `message` and `meta.json` (0600), written into a temporary folder and renamed,
  so a crash never leaves a half-held message;
- `meta.json` holds the decision and its reasons and the masked classification,
  never the body;
- every release, delete and retention purge is an audit event with the operator
  and the reason, and a release below the message's policy opens an incident
  (art. 33(5): the breach log records it, with the 72-hour clock).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit import (
    AuditStore,
    OperatorAction,
    data_categories,
    data_subjects_estimate,
    mask_identifiers,
    to_plain,
)
from gateway.config import Config
from gateway.spool import Envelope, Kind, Spool, new_id
from policy.model import Classification, Decision, Level, Protection

_ID = re.compile(r"^Q[0-9A-F]{16,40}$")

# Strongest first; a release with a protection further down this list than
# everything the policy allowed is a release below policy.
STRENGTH = (Protection.SMIME, Protection.TLS_VERIFIED, Protection.TLS_ENFORCED, Protection.TLS_OPPORTUNISTIC)

# The shipped policy (SPEC), used when a held message's decision lists no steps.
DEFAULT_ALLOWED = {
    Level.PUBLIC: (Protection.TLS_OPPORTUNISTIC,),
    Level.CONFIDENTIAL: (Protection.SMIME, Protection.TLS_VERIFIED, Protection.TLS_ENFORCED),
    Level.SENSITIVE: (Protection.SMIME, Protection.TLS_VERIFIED),
}


class QuarantineError(Exception):
    """No such held message, or it cannot be acted on."""


@dataclass(frozen=True)
class HeldMessage:
    id: str
    held_at: float
    audit_id: str  # the audit record of the original message
    sender: str
    recipients: tuple[str, ...]  # the held ones
    level: Level
    allowed: tuple[Protection, ...]  # what the policy accepted, strongest first
    reasons: dict[str, str]  # recipient -> why it was held
    classification: dict[str, Any]
    size: int
    folder: Path

    @property
    def message_path(self) -> Path:
        return self.folder / "message"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "held_at": self.held_at, "audit_id": self.audit_id, "sender": self.sender,
            "recipients": list(self.recipients), "level": self.level.value,
            "allowed": [p.value for p in self.allowed], "reasons": self.reasons,
            "classification": self.classification, "size": self.size,
        }


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_private(source: Path, target: Path) -> int:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    size = 0
    try:
        with source.open("rb") as src:
            while chunk := src.read(1 << 20):
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def allowed_protections(level: Level, decisions: list[Decision]) -> tuple[Protection, ...]:
    """What the policy would have accepted: the protections its decision chain tried."""
    tried = {step.protection for d in decisions for step in d.steps if step.protection is not None}
    if not tried:
        return DEFAULT_ALLOWED[level]
    return tuple(p for p in STRENGTH if p in tried)


def below_policy(chosen: Protection, allowed: tuple[Protection, ...]) -> bool:
    if not allowed:
        return False
    weakest = max(STRENGTH.index(p) for p in allowed)
    return STRENGTH.index(chosen) > weakest


class QuarantineStore:
    """Blocking file operations; the gateway calls `hold` from an executor thread."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.root = Path(cfg.quarantine.path)

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)

    def hold(self, envelope: Envelope, message_path: Path, decisions: list[Decision],
             classification: Classification) -> str:
        """Copy the message in with its decision; returns the quarantine id."""
        self.ensure()
        quarantine_id = "Q" + new_id()
        held = [d for d in decisions if d.action.value == "quarantine"] or list(decisions)
        work = self.root / f".tmp-{quarantine_id}"
        work.mkdir(mode=0o700)
        try:
            size = _copy_private(message_path, work / "message")
            classification_data = to_plain(classification)
            for evidence in classification_data.get("evidence", []):
                evidence["samples"] = [mask_identifiers(s) for s in evidence.get("samples", [])]
            meta = {
                "id": quarantine_id, "held_at": time.time(), "audit_id": envelope.id,
                "sender": envelope.sender, "recipients": [d.recipient for d in held],
                "level": classification.level.value,
                "allowed": [p.value for p in allowed_protections(classification.level, list(decisions))],
                "reasons": {d.recipient: d.reason for d in held},
                "decisions": [to_plain(d) for d in decisions], "classification": classification_data,
                "size": size, "envelope": json.loads(envelope.to_json()),
            }
            _write_private(work / "meta.json", json.dumps(meta, ensure_ascii=False, indent=1).encode())
            _fsync_dir(work)
            os.rename(work, self.root / quarantine_id)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return quarantine_id

    def folder(self, quarantine_id: str) -> Path:
        if not _ID.match(quarantine_id):
            raise QuarantineError(f"not a quarantine id: {quarantine_id!r}")
        folder = self.root / quarantine_id
        if not (folder / "meta.json").is_file():
            raise QuarantineError(f"no held message {quarantine_id} in {self.root}")
        return folder

    def get(self, quarantine_id: str) -> HeldMessage:
        folder = self.folder(quarantine_id)
        meta = json.loads((folder / "meta.json").read_text())
        return HeldMessage(
            id=meta["id"], held_at=meta["held_at"], audit_id=meta["audit_id"], sender=meta["sender"],
            recipients=tuple(meta["recipients"]), level=Level(meta["level"]),
            allowed=tuple(Protection(p) for p in meta["allowed"]), reasons=meta["reasons"],
            classification=meta["classification"], size=meta["size"], folder=folder,
        )

    def list_held(self) -> list[HeldMessage]:
        if not self.root.is_dir():
            return []
        held = []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if entry.is_dir() and _ID.match(entry.name):
                try:
                    held.append(self.get(entry.name))
                except (QuarantineError, ValueError, KeyError):
                    continue  # half-removed or foreign folder: not ours to show
        return held

    def remove(self, quarantine_id: str) -> None:
        folder = self.folder(quarantine_id)
        # Renamed first so a crash mid-removal never leaves a held message that looks whole.
        doomed = self.root / f".del-{quarantine_id}"
        os.rename(folder, doomed)
        shutil.rmtree(doomed)
        _fsync_dir(self.root)

    def expired(self, now: float | None = None) -> list[HeldMessage]:
        cutoff = (time.time() if now is None else now) - self.cfg.quarantine.retention
        return [h for h in self.list_held() if h.held_at < cutoff]


@dataclass(frozen=True)
class Released:
    quarantine_id: str
    spool_id: str
    protection: Protection
    incident: str | None


def release(cfg: Config, audit: AuditStore, quarantine_id: str, *, reason: str, operator: str,
            protection: Protection | None = None) -> Released:
    """Put a held message back into the pipeline with the chosen protection, on record."""
    if not reason.strip():
        raise QuarantineError("a release needs a reason")
    store = QuarantineStore(cfg)
    held = store.get(quarantine_id)
    chosen = protection or (held.allowed[-1] if held.allowed else Protection.TLS_ENFORCED)
    now = time.time()
    incident_id = None
    if held.level.protected and below_policy(chosen, held.allowed):
        # Art. 33(5): every breach is documented; a deliberate release below policy is
        # treated as one until the compliance officer has assessed it.
        incident = audit.open_incident(operator=operator, at=now, fields={
            "discovered_at": now,
            "what_happened": (f"{operator} released held {held.level.value} message {held.id} to "
                              f"{', '.join(held.recipients)} with {chosen.value}, below its policy "
                              f"({', '.join(p.value for p in held.allowed)})."),
            "cause": f"Administrator release below policy: {reason}",
            "messages": [held.audit_id], "recipients": list(held.recipients), "quarantine_id": held.id,
            "data_categories": data_categories(held.classification),
            "data_subjects_estimate": data_subjects_estimate(held.classification),
        })
        incident_id = incident["id"]
    details: dict[str, Any] = {"protection": chosen.value, "recipients": list(held.recipients),
                               "below_policy": incident_id is not None}
    if incident_id:
        details["incident"] = incident_id
    # Recorded before the message moves: nothing leaves the quarantine unrecorded.
    audit.append_sync(OperatorAction(at=now, operator=operator, action="quarantine.release", target=held.id,
                                     reason=reason, message=held.audit_id, details=details))
    spool = Spool(cfg.spool.path)
    spool.ensure()
    spool_id = spool.submit(held.sender, held.recipients, held.message_path.read_bytes(), kind=Kind.RELEASE,
                            override_protection=chosen.value, origin=held.id)
    audit.append_sync(OperatorAction(at=time.time(), operator=operator, action="quarantine.requeued",
                                     target=held.id, reason=reason, message=held.audit_id,
                                     details={"spool_id": spool_id}))
    store.remove(held.id)
    return Released(held.id, spool_id, chosen, incident_id)


def delete(cfg: Config, audit: AuditStore, quarantine_id: str, *, reason: str, operator: str) -> HeldMessage:
    if not reason.strip():
        raise QuarantineError("a delete needs a reason")
    store = QuarantineStore(cfg)
    held = store.get(quarantine_id)
    audit.append_sync(OperatorAction(at=time.time(), operator=operator, action="quarantine.delete",
                                     target=held.id, reason=reason, message=held.audit_id,
                                     details={"recipients": list(held.recipients)}))
    store.remove(held.id)
    return held


def purge(cfg: Config, audit: AuditStore, *, operator: str, now: float | None = None) -> list[HeldMessage]:
    """Remove what is past `[quarantine] retention` (art. 5(1)(e)), each removal on record."""
    store = QuarantineStore(cfg)
    days = cfg.quarantine.retention / 86400
    purged = []
    for held in store.expired(now):
        audit.append_sync(OperatorAction(at=time.time(), operator=operator, action="quarantine.purge",
                                         target=held.id, reason=f"retention of {days:g} days expired",
                                         message=held.audit_id, details={"held_at": held.held_at}))
        store.remove(held.id)
        purged.append(held)
    return purged
