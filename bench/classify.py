"""Classification speed and memory: python -m bench.classify [--size-mb N] [--big-mb N]

Prints, on one core (the classifier is single-threaded):
- MB/s of a plain-text message (realistic Danish prose with sparse numbers),
  against the 50 MB/s target and against the baseline of only parsing the
  message with the standard library (`email.message_from_bytes`);
- MB/s of digit-dense plain text (invoice lines; number-heavy logs with no
  findings), where every line wakes the numeric detectors: the costly case;
- MB/s over the mixed corpus (text, HTML, PDF, DOCX, XLSX, PPTX, ODT, RTF, zip);
- the peak resident memory of classifying one message of --big-mb MB (default
  50, the gateway's default size limit) with a 5 MB PDF, a 10 MB zip and text,
  measured in a fresh process.
"""

from __future__ import annotations

import argparse
import email
import random
import resource
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from email.policy import compat32
from pathlib import Path

from policy.classify import classify_message, classify_reading
from policy.mime import read_message
from policy.policyfile import load_policy

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB_S = 50.0

_PROSE = (
    "Kære Jens Hansen\n\nTak for din henvendelse af 3. marts om byggetilladelse til carport på "
    "adressen Skovvej 12. Vi har gennemgået ansøgningen og de vedlagte tegninger, og vi kan "
    "oplyse, at projektet overholder lokalplanens bestemmelser om højde og afstand til skel. "
    "Sagen forventes afgjort inden for fire uger. Har du spørgsmål, er du velkommen til at "
    "kontakte os på telefon 72 34 56 78 mellem kl. 9 og 15.\n\nMed venlig hilsen\n"
    "Teknik og Miljø\n\nDear colleagues, please find the minutes of the steering committee "
    "attached. The next meeting is scheduled for April. Best regards, the secretariat.\n"
)


def _invoice_lines(count: int) -> str:
    """Invoice and order lines: every line holds several 4+ digit runs, none a CPR number."""
    rng = random.Random(11)
    lines = []
    for i in range(count):
        lines.append(
            f"Faktura {2026}-{i % 9000 + 1000} Ordrenr. {rng.randrange(10**7, 10**8)} "
            f"Varenr {rng.randrange(1000, 9999)}-{rng.randrange(1000, 9999)} "
            f"Antal {rng.randrange(1, 99)} a {rng.randrange(100, 9999)},{rng.randrange(10, 99)} kr "
            f"Kunde {rng.randrange(100000, 999999)} Dato 2026-03-{i % 28 + 1:02d} "
            f"Tlf. {rng.randrange(20, 99)} {rng.randrange(10, 99)} {rng.randrange(10, 99)} "
            f"{rng.randrange(10, 99)}\n")
    return "".join(lines)


def _number_lines(count: int) -> str:
    """Measurement logs and tables: dense numbers, 4+ digit runs, nothing to find."""
    rng = random.Random(13)
    lines = []
    for i in range(count):
        lines.append(
            f"2026-03-{i % 28 + 1:02d} {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d} "
            f"maaler {rng.randrange(1000, 99999)} forbrug {rng.randrange(0, 99999)}.{rng.randrange(0, 999):03d} "
            f"kWh taeller {rng.randrange(10**8, 10**9)} status {rng.randrange(0, 9999):04d} "
            f"serie {rng.randrange(10**11, 10**12)}\n")
    return "".join(lines)


def _payroll_lines(count: int) -> str:
    """A payroll list: a CPR number on every line, so every window also has findings."""
    rng = random.Random(17)
    lines = []
    for i in range(count):
        lines.append(
            f"Medarbejder {i:05d} Jens Hansen cpr {rng.randrange(1, 28):02d}{rng.randrange(1, 12):02d}"
            f"{rng.randrange(50, 99)}-{rng.randrange(1000, 3999)} loen {rng.randrange(20000, 60000)} "
            f"kr konto 2026-{rng.randrange(1000, 9999)} timer {rng.randrange(100, 170)}\n")
    return "".join(lines)


DIGIT_CASES = {
    "invoice lines": _invoice_lines,
    "number-heavy, no hits": _number_lines,
    "payroll, a CPR number per line": _payroll_lines,
}


def plain_message(size: int, maker: object = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "bench@kommune.example.dk"
    msg["To"] = "x@example.dk"
    msg["Subject"] = "Benchmark"
    if maker is None:
        body = (_PROSE * (size // len(_PROSE) + 1))[:size]
    else:
        sample = maker(20_000)  # type: ignore[operator]
        body = (sample * (size // len(sample) + 1))[:size]
        body = body[:body.rfind("\n") + 1]
    msg.set_content(body, charset="utf-8", cte="8bit")
    return msg.as_bytes()


def big_message(size: int) -> bytes:
    from tests.corpus.build import make_pdf, make_zip

    msg = EmailMessage()
    msg["From"] = "bench@kommune.example.dk"
    msg["To"] = "x@example.dk"
    msg["Subject"] = "Stor besked"
    pdf = make_pdf("\n".join(_PROSE.splitlines() * 2000))
    words = _PROSE.split()
    rng = random.Random(7)  # shuffled prose: compresses like real documents, not 200x
    archive = make_zip({f"doc{i}.txt": " ".join(rng.choices(words, k=300_000)).encode()
                        for i in range(5)})
    # base64 grows attachments by 4/3; fill the rest of the size with text
    text_size = max(size - (len(pdf) + len(archive)) * 4 // 3 - 4096, 1024)
    msg.set_content((_PROSE * (text_size // len(_PROSE) + 1))[:text_size], charset="utf-8",
                    cte="8bit")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="bilag.pdf")
    msg.add_attachment(archive, maintype="application", subtype="zip", filename="bilag.zip")
    return msg.as_bytes()


def rate(raw: bytes, fn: object, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(raw)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return len(raw) / best / 1e6


def peak_rss_kib() -> int:
    """The peak resident size of this process image.

    VmHWM where Linux has it: ru_maxrss of a child also counts the resident
    size its parent had when it forked, which would hide the classifier's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_big(path: Path) -> None:
    """Runs in a fresh process so the peak resident size is this message's alone.

    The message is built by the parent and read here from a file: building it
    (EmailMessage, as_bytes) peaks higher than reading it, and the peak
    resident size only ever goes up, so it would hide the classifier's own peak.
    """
    policy = load_policy(ROOT / "policy.toml")
    raw = path.read_bytes()
    before = peak_rss_kib()
    start = time.perf_counter()
    result = classify_message(raw, policy)
    elapsed = time.perf_counter() - start
    peak = peak_rss_kib()
    print(f"big message: {len(raw) / 1e6:.1f} MB classified {result.level} in {elapsed:.2f} s "
          f"({len(raw) / elapsed / 1e6:.1f} MB/s); peak RSS {peak / 1024:.0f} MiB "
          f"(+{(peak - before) / 1024:.0f} MiB over the process with the message in memory)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=20, help="plain-text message size")
    parser.add_argument("--big-mb", type=int, default=50, help="size of the memory test message")
    parser.add_argument("--big-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.big_only:
        measure_big(args.big_only)
        return 0
    policy = load_policy(ROOT / "policy.toml")
    plain = plain_message(args.size_mb * 1024 * 1024)
    parse_only = rate(plain, lambda raw: email.message_from_bytes(raw, policy=compat32))
    text_rate = rate(plain, lambda raw: classify_message(raw, policy))
    reading = read_message(plain, policy.limits)
    scan_rate = rate(plain, lambda _raw: classify_reading(reading, policy))
    print(f"plain text: {text_rate:.1f} MB/s per core end to end ({len(plain) / 1e6:.1f} MB "
          f"message); target {TARGET_MB_S:.0f} MB/s: x{text_rate / TARGET_MB_S:.2f}")
    print(f"  detectors alone (text already extracted): {scan_rate:.1f} MB/s: "
          f"x{scan_rate / TARGET_MB_S:.2f} of target")
    print(f"  baseline, stdlib parse only (email.message_from_bytes): {parse_only:.1f} MB/s")
    for label, maker in DIGIT_CASES.items():
        dense = plain_message(args.size_mb * 1024 * 1024, maker)
        found = classify_message(dense, policy)
        dense_rate = rate(dense, lambda raw: classify_message(raw, policy))
        hits = sum(e.count for e in found.evidence)
        print(f"digit-dense plain text, {label}: {dense_rate:.1f} MB/s per core end to end "
              f"({len(dense) / 1e6:.1f} MB, {found.level}, {hits} findings); "
              f"target {TARGET_MB_S:.0f} MB/s: x{dense_rate / TARGET_MB_S:.2f}")

    from tests.corpus.build import build_message
    from tests.corpus.messages import corpus

    messages = [build_message(case) for case in corpus()]
    total = sum(len(m) for m in messages)
    start = time.perf_counter()
    rounds = 3
    for _ in range(rounds):
        for raw in messages:
            classify_message(raw, policy)
    elapsed = time.perf_counter() - start
    print(f"mixed corpus: {len(messages)} messages, {total / 1e6:.2f} MB: "
          f"{total * rounds / elapsed / 1e6:.2f} MB/s, "
          f"{len(messages) * rounds / elapsed:.0f} messages/s per core")
    sys.stdout.flush()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "big.eml"
        path.write_bytes(big_message(args.big_mb * 1024 * 1024))
        subprocess.run([sys.executable, "-m", "bench.classify", "--big-only", str(path)],
                       cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
