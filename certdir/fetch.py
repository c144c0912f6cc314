"""Small HTTP GET/POST for CRLs, OCSP and AIA issuer certificates (urllib, run in
the directory's thread pool with a timeout and a size cap)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from concurrent.futures import Executor

from certdir.results import CertdirError

MAX_BYTES = 32 * 1024 * 1024  # the largest OCES CRLs are a few MB


def _http(url: str, body: bytes | None, content_type: str, timeout: float) -> bytes:
    if not url.lower().startswith(("http://", "https://")):
        raise CertdirError(f"{url}: only http and https are fetched")
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")  # noqa: S310 - scheme checked above
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            data: bytes = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise CertdirError(f"{url}: HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CertdirError(f"{url}: {reason}")
    if len(data) > MAX_BYTES:
        raise CertdirError(f"{url}: larger than {MAX_BYTES} bytes")
    return data


async def http_get(url: str, executor: Executor, seconds: float) -> bytes:
    return await _run(executor, seconds, url, None, "")


async def http_post(url: str, body: bytes, content_type: str, executor: Executor, seconds: float) -> bytes:
    return await _run(executor, seconds, url, body, content_type)


async def _run(executor: Executor, seconds: float, url: str, body: bytes | None, content_type: str) -> bytes:
    # urllib bounds connect and each read by `seconds`; the outer bound covers a
    # server that trickles the body.
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(
            loop.run_in_executor(executor, _http, url, body, content_type, seconds), timeout=seconds * 2 + 1)
    except TimeoutError:
        raise CertdirError(f"{url}: no answer within {seconds:g}s")
