"""The compliance report for a period: the questions Datatilsynet asks, answered from the audit log.

In its 2019 inspection of a law-firm office community (2019-41-0029) Datatilsynet
asked: what protection did confidential and sensitive mail get, was any of it
sent unencrypted, to which recipient domains, and what was done about it. The
report answers exactly that, per period (GDPR art. 5(2), art. 32):

1. messages by level, and recipients by level x protection and level x status;
2. the share of confidential and sensitive mail that left with S/MIME, verified
   TLS, enforced TLS;
3. zero, or the list of every protected recipient that got the message in clear;
4. what was held or blocked, and what became of it;
5. the recipient domains most often lacking a certificate or TLS (ask them to fix it);
6. overrides (releases) and incidents with their 72-hour deadlines.

JSON and CSV for machines; HTML (one self-contained file, inline SVG charts, no
scripts or external fonts) for people, in Danish with English available.
"""

from __future__ import annotations

import csv
import html
import io
import time
from collections import Counter
from typing import Any

from gateway.audit import AuditStore, SearchFilter, format_time
from gateway.incidents import deadline_state, notified_late_by

LEVELS = ("public", "confidential", "sensitive")
PROTECTIONS = ("smime", "tls-verified", "tls-enforced", "tls-opportunistic", "none")
STATUSES = ("delivered", "queued", "deferred", "bounced", "quarantined", "blocked")
TLS_PROTECTIONS = ("tls-verified", "tls-enforced")


def _in_clear(entry: dict[str, Any]) -> bool:
    if entry.get("status") != "delivered" or entry.get("protection") == "smime":
        return False
    tls = entry.get("tls")
    return tls is None or tls.get("version") is None


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _lacks_certificate(entry: dict[str, Any]) -> bool:
    return any(s.get("protection") == "smime" and s.get("possible") is False for s in entry.get("steps", []))


def _lacks_tls(entry: dict[str, Any]) -> bool:
    steps = [s for s in entry.get("steps", []) if s.get("protection") in TLS_PROTECTIONS]
    if steps and all(s.get("possible") is False for s in steps):
        return True
    return _in_clear(entry)


def build_report(store: AuditStore, since: float, until: float, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    records = store.search(SearchFilter(since=since, until=until))
    by_level: Counter[str] = Counter()
    protection_matrix = {level: dict.fromkeys(PROTECTIONS, 0) for level in LEVELS}
    status_matrix = {level: dict.fromkeys(STATUSES, 0) for level in LEVELS}
    left_protected: Counter[str] = Counter()
    in_clear: list[dict[str, Any]] = []
    public_in_clear = 0
    held: list[dict[str, Any]] = []
    blocked: list[dict[str, Any]] = []
    no_cert: Counter[str] = Counter()
    no_tls: Counter[str] = Counter()
    recipients_total = 0
    for record in records:
        level = (record.get("classification") or {}).get("level") or "public"
        by_level[level] += 1
        outcomes = _quarantine_outcomes(record)
        for entry in record["recipients"]:
            recipients_total += 1
            protection = entry.get("protection") or "none"
            protection_matrix[level][protection if protection in PROTECTIONS else "none"] += 1
            status = entry.get("status") or "queued"
            status_matrix[level][status if status in STATUSES else "queued"] += 1
            protected = level != "public"
            if protected and status == "delivered":
                left_protected["in clear" if _in_clear(entry) else protection] += 1
            if _in_clear(entry):
                if protected:
                    in_clear.append({"record": record["id"], "received_at": record["received_at"], "level": level,
                                     "recipient": entry["address"], "protection": protection,
                                     "mx": (entry.get("tls") or {}).get("mx"), "incidents": record["incidents"]})
                else:
                    public_in_clear += 1
            if status == "quarantined" or entry.get("action") == "quarantine":
                qid = entry.get("quarantine_id") or record.get("quarantine_id")
                held.append({"record": record["id"], "received_at": record["received_at"], "level": level,
                             "recipient": entry["address"], "quarantine_id": qid, "reason": entry.get("reason", ""),
                             "outcome": outcomes.get(qid or "", "held")})
            if status == "blocked":
                blocked.append({"record": record["id"], "received_at": record["received_at"], "level": level,
                                "recipient": entry["address"], "reason": entry.get("reason", "")})
            if protected and _lacks_certificate(entry):
                no_cert[_domain(entry["address"])] += 1
            if protected and _lacks_tls(entry):
                no_tls[_domain(entry["address"])] += 1
    left_total = sum(left_protected.values())
    share = {key: {"count": left_protected[key], "share": (left_protected[key] / left_total) if left_total else None}
             for key in ("smime", "tls-verified", "tls-enforced", "tls-opportunistic", "in clear")}
    releases = [a for a in store.operator_actions(since, until) if a["action"] == "quarantine.release"]
    incidents = {i["id"]: i for i in store.incidents(since=since, until=until)}
    incidents.update({i["id"]: i for i in store.incidents(status="open")})
    return {
        "period": {"since": since, "until": until, "since_text": format_time(since),
                   "until_text": format_time(until - 1)},  # --until is inclusive: show its last second
        "generated_at": now,
        "messages": len(records),
        "recipients": recipients_total,
        "by_level": {level: by_level[level] for level in LEVELS},
        "recipients_by_level_protection": protection_matrix,
        "recipients_by_level_status": status_matrix,
        "protected_left": {"total": left_total, "by_protection": share},
        "in_clear": {"protected_count": len(in_clear), "protected": in_clear, "public_count": public_in_clear},
        "quarantined": {"count": len(held), "outcomes": dict(Counter(h["outcome"] for h in held)), "items": held},
        "blocked": {"count": len(blocked), "items": blocked},
        "domains_lacking_certificate": [{"domain": d, "recipients": n} for d, n in _top(no_cert)],
        "domains_lacking_tls": [{"domain": d, "recipients": n} for d, n in _top(no_tls)],
        "overrides": [{"at": a["at"], "operator": a["operator"], "quarantine_id": a["target"],
                       "reason": a["reason"], "protection": a["details"].get("protection"),
                       "below_policy": bool(a["details"].get("below_policy")),
                       "incident": a["details"].get("incident"), "record": a.get("message")} for a in releases],
        "incidents": [{**i, "deadline_state": deadline_state(i, now)}
                      for i in sorted(incidents.values(), key=lambda i: (i["created_at"], i["id"]))],
    }


def _top(counter: Counter[str], n: int = 10) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:n]


def _quarantine_outcomes(record: dict[str, Any]) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    names = {"quarantine.release": "released", "quarantine.delete": "deleted", "quarantine.purge": "purged"}
    for action in record.get("operator_actions", []):
        if action["action"] in names:
            outcomes[action["target"]] = names[action["action"]]
    return outcomes


# -- CSV ------------------------------------------------------------------------------


def report_csv(report: dict[str, Any]) -> str:
    """Long format (section, group, item, value): one figure per row, easy to pivot."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "group", "item", "value"])
    writer.writerow(["period", "", "since", report["period"]["since_text"]])
    writer.writerow(["period", "", "until", report["period"]["until_text"]])
    writer.writerow(["totals", "", "messages", report["messages"]])
    writer.writerow(["totals", "", "recipients", report["recipients"]])
    for level, n in report["by_level"].items():
        writer.writerow(["messages_by_level", level, "", n])
    for level, row in report["recipients_by_level_protection"].items():
        for protection, n in row.items():
            writer.writerow(["recipients_by_level_protection", level, protection, n])
    for level, row in report["recipients_by_level_status"].items():
        for status, n in row.items():
            writer.writerow(["recipients_by_level_status", level, status, n])
    for key, figure in report["protected_left"]["by_protection"].items():
        share = "" if figure["share"] is None else f"{figure['share']:.4f}"
        writer.writerow(["protected_left", key, "count", figure["count"]])
        writer.writerow(["protected_left", key, "share", share])
    writer.writerow(["in_clear", "protected", "count", report["in_clear"]["protected_count"]])
    writer.writerow(["in_clear", "public", "count", report["in_clear"]["public_count"]])
    for item in report["in_clear"]["protected"]:
        writer.writerow(["in_clear", item["record"], item["recipient"], item["level"]])
    writer.writerow(["quarantined", "", "count", report["quarantined"]["count"]])
    for outcome, n in sorted(report["quarantined"]["outcomes"].items()):
        writer.writerow(["quarantined", "outcome", outcome, n])
    writer.writerow(["blocked", "", "count", report["blocked"]["count"]])
    for item in report["domains_lacking_certificate"]:
        writer.writerow(["domains_lacking_certificate", item["domain"], "recipients", item["recipients"]])
    for item in report["domains_lacking_tls"]:
        writer.writerow(["domains_lacking_tls", item["domain"], "recipients", item["recipients"]])
    for item in report["overrides"]:
        writer.writerow(["override", item["quarantine_id"], item["protection"],
                         f"{item['operator']}: {item['reason']}" + (f" ({item['incident']})" if item["incident"] else "")])
    for item in report["incidents"]:
        writer.writerow(["incident", item["id"], item["deadline_state"], format_time(item["deadline"])])
    return out.getvalue()


# -- HTML ------------------------------------------------------------------------------

_TEXT: dict[str, dict[str, Any]] = {
    "da": {
        "title": "Compliance-rapport: udgående e-mail", "total": "I alt", "period": "Periode", "generated": "Dannet",
        "answers": "Svar på tilsynets spørgsmål", "messages": "Beskeder", "recipients": "Modtagere",
        "q_protection": "Hvilken beskyttelse fik fortrolig og følsom post?",
        "q_clear": "Blev noget sendt ukrypteret?", "q_held": "Hvad blev tilbageholdt, og hvorfor?",
        "q_incidents": "Hvilke hændelser er åbne?",
        "none_in_clear": "Nej: ingen fortrolig eller følsom post er sendt ukrypteret i perioden.",
        "some_in_clear": "JA: {n} modtager(e) af fortrolig eller følsom post fik beskeden ukrypteret.",
        "by_level": "Beskeder efter niveau", "by_protection": "Modtagere efter niveau og beskyttelse",
        "by_status": "Modtagere efter niveau og status", "share": "Fortrolig og følsom post, der er sendt",
        "in_clear": "Sendt ukrypteret", "held": "Tilbageholdt (karantæne)", "blocked": "Afvist",
        "domains_cert": "Modtagerdomæner uden certifikat", "domains_tls": "Modtagerdomæner uden (god nok) TLS",
        "overrides": "Frigivelser (tilsidesættelser)", "incidents": "Hændelser (brud på persondatasikkerheden)",
        "deadline": "72-timers frist", "state": "Status", "none": "Ingen", "level": "Niveau",
        "protection": "Beskyttelse", "status": "Status", "count": "Antal", "share_col": "Andel",
        "domain": "Domæne", "record": "Post-id", "recipient": "Modtager", "reason": "Årsag", "outcome": "Udfald",
        "operator": "Operatør", "when": "Tidspunkt", "what": "Hvad skete", "held_summary":
        "{n} modtager(e) tilbageholdt; udfald: {outcomes}.", "open_incidents": "{n} åben/åbne hændelse(r).",
        "share_summary": "{total} modtager(e) af fortrolig/følsom post: S/MIME {smime}, verificeret TLS "
                         "{verified}, tvunget TLS {enforced}.",
        "public_clear": "Offentlig post leveret uden TLS (tilladt efter politikken): {n}.",
        "levels": {"public": "offentlig", "confidential": "fortrolig", "sensitive": "følsom"},
        "values": {
            "smime": "S/MIME", "tls-verified": "verificeret TLS", "tls-enforced": "tvunget TLS",
            "tls-opportunistic": "opportunistisk TLS", "none": "ingen", "in clear": "ukrypteret",
            "delivered": "leveret", "queued": "i kø", "deferred": "udskudt", "bounced": "returneret",
            "quarantined": "tilbageholdt", "blocked": "afvist",
            "held": "tilbageholdt", "released": "frigivet", "deleted": "slettet",
            "purged": "slettet (opbevaringstid udløbet)",
            "open": "frist løber", "overdue": "frist overskredet", "notified": "anmeldt til Datatilsynet",
            "notified late": "anmeldt for sent", "closed": "lukket uden anmeldelse",
        },
        "incident": "Hændelse", "id": "ID", "mx": "MX", "late_by": "{hours:.0f} t for sent",
    },
    "en": {
        "title": "Compliance report: outbound e-mail", "total": "Total", "period": "Period", "generated": "Generated",
        "answers": "Answers to the supervisory questions", "messages": "Messages", "recipients": "Recipients",
        "q_protection": "What protection did confidential and sensitive mail get?",
        "q_clear": "Was anything sent in clear?", "q_held": "What was held, and why?",
        "q_incidents": "Which incidents are open?",
        "none_in_clear": "No: no confidential or sensitive mail left unencrypted in the period.",
        "some_in_clear": "YES: {n} recipient(s) of confidential or sensitive mail got it unencrypted.",
        "by_level": "Messages by level", "by_protection": "Recipients by level and protection",
        "by_status": "Recipients by level and status", "share": "Confidential and sensitive mail that left",
        "in_clear": "Sent in clear", "held": "Held (quarantine)", "blocked": "Blocked",
        "domains_cert": "Recipient domains lacking certificates", "domains_tls": "Recipient domains lacking (good enough) TLS",
        "overrides": "Releases (overrides)", "incidents": "Incidents (personal data breaches)",
        "deadline": "72-hour deadline", "state": "State", "none": "None", "level": "Level",
        "protection": "Protection", "status": "Status", "count": "Count", "share_col": "Share",
        "domain": "Domain", "record": "Record", "recipient": "Recipient", "reason": "Reason", "outcome": "Outcome",
        "operator": "Operator", "when": "When", "what": "What happened", "held_summary":
        "{n} recipient(s) held; outcomes: {outcomes}.", "open_incidents": "{n} open incident(s).",
        "share_summary": "{total} recipient(s) of confidential/sensitive mail: S/MIME {smime}, verified TLS "
                         "{verified}, enforced TLS {enforced}.",
        "public_clear": "Public mail delivered without TLS (allowed by the policy): {n}.",
        "levels": {"public": "public", "confidential": "confidential", "sensitive": "sensitive"},
        "values": {
            "smime": "S/MIME", "tls-verified": "verified TLS", "tls-enforced": "enforced TLS",
            "tls-opportunistic": "opportunistic TLS", "none": "none", "in clear": "in clear",
            "delivered": "delivered", "queued": "queued", "deferred": "deferred", "bounced": "bounced",
            "quarantined": "quarantined", "blocked": "blocked",
            "held": "held", "released": "released", "deleted": "deleted", "purged": "purged (retention expired)",
            "open": "deadline running", "overdue": "deadline overdue", "notified": "notified to Datatilsynet",
            "notified late": "notified late", "closed": "closed without notification",
        },
        "incident": "Incident", "id": "ID", "mx": "MX", "late_by": "{hours:.0f} h late",
    },
}

_COLOURS = {"smime": "#1b7837", "tls-verified": "#5aae61", "tls-enforced": "#d9f0a3",
            "tls-opportunistic": "#fdae61", "none": "#bababa", "in clear": "#d73027",
            "delivered": "#1b7837", "queued": "#92c5de", "deferred": "#4393c3", "bounced": "#b2abd2",
            "quarantined": "#fdae61", "blocked": "#d73027"}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def _stacked_bars(rows: list[tuple[str, dict[str, int]]], keys: tuple[str, ...], title: str,
                  labels: dict[str, str] | None = None) -> str:
    """Horizontal stacked bars, one per row, with a legend: readable without colour, too (counts in the table)."""
    names = labels or {}
    width, label_w, bar_h, gap = 760, 130, 26, 12
    height = 40 + len(rows) * (bar_h + gap) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f'<text x="0" y="16" font-size="14" font-weight="bold">{_e(title)}</text>']
    for i, (label, values) in enumerate(rows):
        y = 30 + i * (bar_h + gap)
        total = sum(values.values())
        parts.append(f'<text x="0" y="{y + bar_h * 0.7:.0f}" font-size="13">{_e(label)} ({total})</text>')
        x = float(label_w)
        for key in keys:
            n = values.get(key, 0)
            if not n or not total:
                continue
            w = (width - label_w - 10) * n / total
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{_COLOURS.get(key, "#888")}">'
                         f'<title>{_e(names.get(key, key))}: {n}</title></rect>')
            if w > 28:
                parts.append(f'<text x="{x + w / 2:.1f}" y="{y + bar_h * 0.7:.0f}" font-size="12" '
                             f'text-anchor="middle">{n}</text>')
            x += w
        if not total:
            parts.append(f'<rect x="{label_w}" y="{y}" width="{width - label_w - 10}" height="{bar_h}" '
                         f'fill="none" stroke="#ccc"/>')
    y = 30 + len(rows) * (bar_h + gap) + 4
    x = 0.0
    for key in keys:
        parts.append(f'<rect x="{x:.0f}" y="{y}" width="12" height="12" fill="{_COLOURS.get(key, "#888")}"/>'
                     f'<text x="{x + 16:.0f}" y="{y + 11}" font-size="12">{_e(names.get(key, key))}</text>')
        x += 24 + 7.5 * len(names.get(key, key))
    parts.append("</svg>")
    return "".join(parts)


def _bars(items: list[tuple[str, int]], title: str, colour: str) -> str:
    width, label_w, bar_h, gap = 760, 240, 20, 6
    height = 30 + max(1, len(items)) * (bar_h + gap)
    top = max((n for _, n in items), default=0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f'<text x="0" y="16" font-size="14" font-weight="bold">{_e(title)}</text>']
    for i, (label, n) in enumerate(items):
        y = 26 + i * (bar_h + gap)
        w = (width - label_w - 60) * n / top if top else 0
        parts.append(f'<text x="0" y="{y + 15}" font-size="13">{_e(label)}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list[Any]], empty: str, recorded: tuple[int, ...] = ()) -> str:
    """`recorded`: columns holding text as it was recorded (reasons, what happened), shown untranslated."""
    if not rows:
        return f"<p class=\"empty\">{_e(empty)}</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class=\"recorded\">{_e(c)}</td>" if n in recorded else f"<td>{_e(c)}</td>"
                                    for n, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(report: dict[str, Any], lang: str = "da") -> str:
    t = _TEXT[lang]
    lv = t["levels"]
    names: dict[str, str] = t["values"]

    def v(key: str | None) -> str:
        return names.get(key or "none", key or "-")

    def state(incident: dict[str, Any]) -> str:
        late = notified_late_by(incident)
        return v(incident["deadline_state"]) + (f" ({t['late_by'].format(hours=late / 3600)})" if late else "")
    share = report["protected_left"]["by_protection"]
    total = report["protected_left"]["total"]
    clear_n = report["in_clear"]["protected_count"]
    open_incidents = [i for i in report["incidents"] if i["status"] == "open"]
    outcomes = ", ".join(f"{v(k)} {n}" for k, n in sorted(report["quarantined"]["outcomes"].items())) or "-"
    answers = [
        (t["q_protection"], t["share_summary"].format(
            total=total, smime=_pct(share["smime"]["count"], total),
            verified=_pct(share["tls-verified"]["count"], total),
            enforced=_pct(share["tls-enforced"]["count"], total))),
        (t["q_clear"], t["some_in_clear"].format(n=clear_n) if clear_n else t["none_in_clear"]),
        (t["q_held"], t["held_summary"].format(n=report["quarantined"]["count"], outcomes=outcomes)),
        (t["q_incidents"], t["open_incidents"].format(n=len(open_incidents))),
    ]
    pm = report["recipients_by_level_protection"]
    sm = report["recipients_by_level_status"]
    share_rows = [[v(k), share[k]["count"], _pct(share[k]["count"], total)] for k in share]
    sections = [
        f"<h1>{_e(t['title'])}</h1>",
        f"<p>{_e(t['period'])}: {_e(report['period']['since_text'])} – {_e(report['period']['until_text'])}. "
        f"{_e(t['generated'])}: {_e(format_time(report['generated_at']))}. {_e(t['messages'])}: {report['messages']}, "
        f"{_e(t['recipients'])}: {report['recipients']}.</p>",
        f"<h2>{_e(t['answers'])}</h2><dl>"
        + "".join(f"<dt>{_e(q)}</dt><dd class=\"{'alert' if (q == t['q_clear'] and clear_n) else ''}\">{_e(a)}</dd>"
                  + (f"<dd>{_e(t['public_clear'].format(n=report['in_clear']['public_count']))}</dd>"
                     if q == t["q_clear"] else "")
                  for q, a in answers) + "</dl>",
        f"<h2>{_e(t['share'])}</h2>",
        _stacked_bars([(t["total"], {k: v["count"] for k, v in share.items()})],
                      ("smime", "tls-verified", "tls-enforced", "tls-opportunistic", "in clear"), t["share"], names),
        _table([t["protection"], t["count"], t["share_col"]], share_rows, t["none"]),
        f"<h2>{_e(t['by_protection'])}</h2>",
        _stacked_bars([(lv[level], pm[level]) for level in LEVELS], PROTECTIONS, t["by_protection"], names),
        _table([t["level"], *(v(p) for p in PROTECTIONS)], [[lv[level], *pm[level].values()] for level in LEVELS],
               t["none"]),
        f"<h2>{_e(t['by_status'])}</h2>",
        _stacked_bars([(lv[level], sm[level]) for level in LEVELS], STATUSES, t["by_status"], names),
        _table([t["level"], *(v(s) for s in STATUSES)], [[lv[level], *sm[level].values()] for level in LEVELS],
               t["none"]),
        f"<h2>{_e(t['by_level'])}</h2>",
        _table([t["level"], t["count"]], [[lv[k], v] for k, v in report["by_level"].items()], t["none"]),
        f"<h2 class=\"{'alert' if clear_n else ''}\">{_e(t['in_clear'])}: {clear_n}</h2>",
        _table([t["when"], t["record"], t["level"], t["recipient"], t["protection"], t["mx"]],
               [[format_time(i["received_at"]), i["record"], lv[i["level"]], i["recipient"], v(i["protection"]),
                 i["mx"] or "-"] for i in report["in_clear"]["protected"]], t["none"]),
        f"<h2>{_e(t['held'])}: {report['quarantined']['count']}</h2>",
        _table([t["when"], t["record"], t["level"], t["recipient"], t["reason"], t["outcome"]],
               [[format_time(i["received_at"]), i["quarantine_id"] or i["record"], lv[i["level"]], i["recipient"],
                 i["reason"], v(i["outcome"])] for i in report["quarantined"]["items"]], t["none"], recorded=(4,)),
        f"<h2>{_e(t['blocked'])}: {report['blocked']['count']}</h2>",
        _table([t["when"], t["record"], t["level"], t["recipient"], t["reason"]],
               [[format_time(i["received_at"]), i["record"], lv[i["level"]], i["recipient"], i["reason"]]
                for i in report["blocked"]["items"]], t["none"], recorded=(4,)),
        f"<h2>{_e(t['domains_cert'])}</h2>",
        _bars([(d["domain"], d["recipients"]) for d in report["domains_lacking_certificate"]],
              t["domains_cert"], "#4393c3") if report["domains_lacking_certificate"] else f"<p>{_e(t['none'])}</p>",
        f"<h2>{_e(t['domains_tls'])}</h2>",
        _bars([(d["domain"], d["recipients"]) for d in report["domains_lacking_tls"]],
              t["domains_tls"], "#d6604d") if report["domains_lacking_tls"] else f"<p>{_e(t['none'])}</p>",
        f"<h2>{_e(t['overrides'])}</h2>",
        _table([t["when"], t["id"], t["operator"], t["protection"], t["reason"], t["incident"]],
               [[format_time(o["at"]), o["quarantine_id"], o["operator"], v(o["protection"]), o["reason"],
                 o["incident"] or "-"] for o in report["overrides"]], t["none"], recorded=(4,)),
        f"<h2>{_e(t['incidents'])}</h2>",
        _table([t["id"], t["what"], t["deadline"], t["state"]],
               [[i["id"], i["what_happened"], format_time(i["deadline"]), state(i)]
                for i in report["incidents"]], t["none"], recorded=(1,)),
    ]
    style = ("body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:2em;"
             "color:#222;max-width:900px}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em;"
             "border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:.9em}"
             "th{background:#f0f0f0}dt{font-weight:bold;margin-top:.6em}.alert{color:#b2182b;font-weight:bold}"
             ".empty{color:#666}svg{display:block;margin:.5em 0}")
    return (f"<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(t['title'])}</title><style>{style}</style></head><body>"
            + "\n".join(sections) + "</body></html>\n")
