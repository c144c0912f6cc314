"""The gateway's log: every line one JSON object, whoever wrote it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import asyncio, logging, threading, warnings
from gateway import eventlog
eventlog.setup()
eventlog.event("accepted", id="ID1")
logging.getLogger("mail.log").info("every connection: not wanted")
logging.getLogger("mail.log").warning("peer unrecognised: XYZZY")
warnings.warn("old api")
async def fail():
    raise ValueError("in a task nobody awaited")
loop = asyncio.new_event_loop()
task = loop.create_task(fail())
loop.run_until_complete(asyncio.sleep(0.01))
del task
import gc; gc.collect()
thread = threading.Thread(target=lambda: 1 / 0, name="worker")
thread.start(); thread.join()
raise RuntimeError("uncaught in main")
"""


def test_library_lines_warnings_and_uncaught_exceptions_are_json_lines():
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    events = [json.loads(line) for line in result.stderr.splitlines()]
    by = {(e["event"], e.get("logger")): e for e in events}
    assert by[("accepted", None)]["id"] == "ID1"
    assert by[("log", "mail.log")]["message"] == "peer unrecognised: XYZZY"
    assert not any("not wanted" in line for line in result.stderr.splitlines())  # libraries: warnings up
    assert "old api" in by[("log", "py.warnings")]["message"]
    assert "ValueError" in by[("log", "asyncio")]["traceback"]
    thread = [e for e in events if e["event"] == "uncaught-exception" and e.get("thread") == "worker"]
    assert thread and "ZeroDivisionError" in thread[0]["traceback"]
    main = [e for e in events if e["event"] == "uncaught-exception" and e["error"] == "RuntimeError"]
    assert main and "uncaught in main" in main[0]["traceback"]


def test_a_field_never_overrides_the_lines_level_or_event(capsys):
    import logging
    import threading

    from gateway import eventlog

    root = logging.getLogger()
    saved = list(root.handlers), root.level, sys.excepthook, threading.excepthook
    eventlog.setup()
    try:
        eventlog.event("classified", id="ID2", level="public", event="other")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        sys.excepthook, threading.excepthook = saved[2], saved[3]
        logging.captureWarnings(False)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["level"], line["event"], line["field_level"], line["field_event"]) == (
        "info", "classified", "public", "other")
