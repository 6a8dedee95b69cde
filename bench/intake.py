"""Benchmarks that print figures (JSON copies under bench/results/). Not timed tests.

Image intake (decode + the classifier's preprocessing) on the real PBC cells in
../shared/data/pbc, and synthetic data generation. Skips a data set, saying so, when absent.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from marrowscope.core.images import decode_pil_image
from marrowscope.core.preprocess import InputSpecData, preprocess_image
from marrowscope.core.synthetic import make_cell, make_field, synthetic_classes

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"


def timed(fn, items):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    out = [fn(item) for item in items]
    return out, time.perf_counter() - started


def bench_intake(limit: int = 800) -> dict:
    files = sorted((DATA / "pbc").glob("*/*.jpg"))[::10][:limit]
    if not files:
        return {"skipped": f"no PBC images under {DATA / 'pbc'}"}
    blobs = [f.read_bytes() for f in files]
    spec = InputSpecData(size=96)
    # The serving path's two stages (decode_for_model): reduced decode, then resize to pixels.
    decoded, decode_s = timed(lambda b: decode_pil_image(b, reduce_to=spec.size), blobs)
    _, prep_s = timed(lambda d: preprocess_image(d.image, spec, d.source_size), decoded)
    return {
        "images": len(blobs),
        "decode_per_s": round(len(blobs) / decode_s, 1),
        "preprocess_96px_per_s": round(len(blobs) / prep_s, 1),
        "mean_bytes": int(np.mean([len(b) for b in blobs])),
    }


def bench_synthetic(n: int = 4) -> dict:
    codes = synthetic_classes()
    _, cell_s = timed(lambda c: make_cell(c, 0), codes * n)
    _, field_s = timed(lambda i: make_field(i), range(n))
    return {
        "cells_per_s": round(len(codes) * n / cell_s, 1),
        "fields_704_per_s": round(n / field_s, 2),
    }


def main() -> int:
    results = {
        "machine": {
            "python": sys.version.split()[0],
            "processor": platform.processor() or platform.machine(),
        },
        "intake_pbc": bench_intake(),
        "synthetic": bench_synthetic(),
    }
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "intake.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
