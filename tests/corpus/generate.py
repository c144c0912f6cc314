"""Write the labelled corpus as .eml files: python -m tests.corpus.generate OUTDIR

Each file is named LABEL--NAME.eml, so `sikkermail explain` and the benchmark
can be run against the same messages the corpus test classifies.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.corpus.build import build_message
from tests.corpus.messages import corpus


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.corpus.generate OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for case in corpus():
        (out / f"{case.expected}--{case.name}.eml").write_bytes(build_message(case))
    print(f"{len(corpus())} messages written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
