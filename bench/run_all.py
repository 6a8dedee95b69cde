"""``make bench``: every benchmark, one after another; each prints its figures and writes JSON
under bench/results/. Slow experiment-sized runs (supervised PBC training, the SSL experiment)
are separate commands named in the README."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "intake.py",
    "classifier.py",
    "segmentation.py",
    "segmentation_unet.py",  # trains two field U-Nets: about 10 minutes on 2 cores
    "lis_api_load.py",
    "curation_workbench.py",
    "workbench_round.py",
    "ood.py",  # trains a PBC classifier (about 5 minutes) and scores other sources
]


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)]).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
