"""`sikkermail certs import FILE [--domain DOMAIN]` / `sikkermail certs list`: the
local certificate store. Imported certificates are validated like any other;
nothing invalid is filed."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from cryptography import x509

from certdir import CandidateCert, CertdirError, CertificateDirectory, ImportOutcome
from certdir.certfiles import certificates_from_bytes
from gateway.certdir_setup import directory_from_config
from gateway.commands import CommandError, common_options, load, print_json, wants_json
from gateway.commands.lookup import candidate_json


def register(sub: Any) -> None:
    p = sub.add_parser("certs", help="the local certificate store: import, list")
    certs = p.add_subparsers(dest="certs_command", metavar="SUBCOMMAND")
    certs.required = True
    imp = certs.add_parser("import", parents=[common_options()],
                           help="add certificates (PEM, DER, PKCS#7, signed .eml), validated")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--domain", help="file the certificate for a whole domain (function mailbox)")
    imp.set_defaults(run=run_import)
    lst = certs.add_parser("list", parents=[common_options()], help="certificates in the local store")
    lst.set_defaults(run=run_list)


def run_import(args: argparse.Namespace) -> int:
    cfg = load(args)
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}")

    async def go() -> list[ImportOutcome]:
        directory = directory_from_config(cfg)
        try:
            return await directory.import_certificates(data, str(path), domain=args.domain)
        finally:
            await directory.close()

    try:
        outcomes = asyncio.run(go())
    except CertdirError as exc:
        raise CommandError(str(exc))
    rejected = [o for o in outcomes if o.rejection is not None]
    filed = [o for o in outcomes if o.filed_as and o.filed_as != ("intermediate",)]
    if wants_json(args):
        print_json([{"certificate": candidate_json(o.candidate), "filed_as": list(o.filed_as),
                     "rejected": o.rejection.reason if o.rejection else None,
                     "code": o.rejection.code.value if o.rejection else None} for o in outcomes])
    else:
        for o in outcomes:
            if o.rejection:
                print(f"rejected {o.candidate.subject} ({o.candidate.sha256[:16]}…): {o.rejection.reason}")
            else:
                print(f"imported {o.candidate.subject} ({o.candidate.sha256[:16]}…) as {', '.join(o.filed_as)}")
    return 0 if filed and not rejected else 1


def run_list(args: argparse.Namespace) -> int:
    cfg = load(args)
    try:
        directory: CertificateDirectory = directory_from_config(cfg)
    except CertdirError as exc:
        raise CommandError(str(exc))
    rows: list[dict[str, Any]] = []
    try:
        if directory.store is None:
            raise CommandError("no local store is configured ([certdir] local_store)")
        for stored in directory.store.entries():
            row: dict[str, Any] = {"kind": stored.kind.value, "key": stored.key, "file": str(stored.path)}
            try:
                cert: x509.Certificate = certificates_from_bytes(stored.data, name=str(stored.path))[0]
                row["certificate"] = candidate_json(CandidateCert.from_certificate(cert, f"local:{stored.kind.value}",
                                                                                   str(stored.path)))
            except CertdirError as exc:
                row["error"] = str(exc)
            rows.append(row)
    finally:
        asyncio.run(directory.close())
    if wants_json(args):
        print_json(rows)
    else:
        for row in rows:
            c = row.get("certificate")
            if c:
                print(f"{row['kind']:8} {row['key']}  {c['sha256'][:16]}…  until {c['not_after'][:10]}  {c['subject']}")
            else:
                print(f"{row['kind']:8} {row['key']}  unreadable: {row['error']}")
        if not rows:
            print("the local store is empty")
    return 0
