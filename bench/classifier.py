"""Classifier speed on this machine: PyTorch eager vs in-process ONNX Runtime vs the inference
service over gRPC, training images/s, and where the served time goes.

    python bench/classifier.py [--width 16] [--cells 1024]

The served figure is end to end: the inference service runs as its own process (as deployed),
reads the real PBC JPEGs from a filesystem object store, decodes and preprocesses them and
answers over loopback gRPC; the client streams requests of 64 cells (batch 64) or sends one
cell per call (batch 1). The three are measured in alternating rounds, so that the ratios the
targets name compare figures taken at the same machine speed; the headline service has its
pixel cache off, so every cell is fetched and decoded. After the rounds, two more serving cases:
the crops the segmentation service stores (stain-v3, the default, on the real TXL-PBC fields:
masked cells centred on the 282 black square, lossless PNG), and cells the service has seen
before (pixel cache on, as in every SSL round after the first). Writes
bench/results/classifier.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import psycopg
import torch

from marrowscope.core.db import DictPool, create_database, drop_database, open_pool
from marrowscope.core.images import decode_image, decode_pil_image, encode_png
from marrowscope.core.model_registry import NewModelVersion, register_model_version
from marrowscope.core.objectstore import FilesystemObjectStore, put_content_addressed
from marrowscope.core.preprocess import InputSpecData, preprocess_image
from marrowscope.core.rpc import check_health, open_channel
from marrowscope.core.settings import DatabaseSettings
from marrowscope.core.taxonomy import Taxonomy, load_taxonomy
from marrowscope.segmentation.algorithm import crop_cell
from marrowscope.segmentation.stain import StainSegmenter
from marrowscope.training.model import PixelInput, WithSoftmax, build_model, count_flops
from marrowscope.training.trainer import HyperParameters, export_onnx, train
from marrowscope.v1 import common_pb2, inference_pb2, inference_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
PBC = ROOT.parent / "shared" / "data" / "pbc"
TXL_PBC = ROOT.parent / "shared" / "data" / "txl-pbc"
RESULTS = ROOT / "bench" / "results"
ADMIN_DSN = os.environ.get(
    "MARROWSCOPE_BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SECONDS = 3.0


def segmentation_crops(limit: int) -> list[bytes]:
    """The crops the segmentation service stores for the TXL-PBC fields (val, then test), cut
    by its default algorithm: what the service classifies after every field upload."""
    segmenter, crops = StainSegmenter(), []
    for field in sorted(TXL_PBC.glob("*/images/*.jpg"), key=lambda p: (p.parts[-3] != "val", p)):
        rgb = decode_image(field.read_bytes()).rgb
        crops += [encode_png(crop_cell(rgb, cell)) for cell in segmenter.segment(rgb).cells]
        if len(crops) >= limit:
            break
    return crops[:limit]


def rate(fn, batch: int, seconds: float = SECONDS) -> float:  # type: ignore[no-untyped-def]
    """Images per second of ``fn`` (one call handles ``batch`` images), after a warm-up call."""
    fn()
    started, images = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        fn()
        images += batch
    return images / (time.perf_counter() - started)


ROUNDS = 5


class ServedClient:
    """The benchmark's gRPC client of the inference service. It owns its event loop, so that
    its measurements can alternate with the in-process ones in plain synchronous code."""

    def __init__(self, address: str, keys: list[str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.channel = self.loop.run_until_complete(self._open(address))
        self.stub = inference_pb2_grpc.InferenceServiceStub(self.channel)
        self.refs = [common_pb2.CellRef(cell_id=str(i), object_key=k) for i, k in enumerate(keys)]
        self.version = "production"  # until load() names one

    @staticmethod
    async def _open(address: str) -> grpc.aio.Channel:
        return open_channel(address, "marrowscope.v1.InferenceService")

    def load(self, version: str) -> None:
        """Warm ``version``; every request after this names it."""
        request = inference_pb2.LoadModelRequest(model_version=version)
        self.loop.run_until_complete(self.stub.LoadModel(request, timeout=60))
        self.version = version

    def stream_rate(self, versions: list[str] | None = None) -> float:
        """Images/s of one ClassifyStream over all cells, in requests of 64 (batch 64); with
        ``versions``, consecutive requests name them in turn (several versions served)."""
        names = versions or [self.version]

        async def stream() -> int:
            requests = [
                inference_pb2.ClassifyRequest(
                    cells=self.refs[i : i + 64], model_version=names[(i // 64) % len(names)]
                )
                for i in range(0, len(self.refs), 64)
            ]
            done = 0
            async for response in self.stub.ClassifyStream(iter(requests), timeout=600):
                done += sum(1 for p in response.predictions if not p.error)
            return done

        started = time.perf_counter()
        done = self.loop.run_until_complete(stream())
        return done / (time.perf_counter() - started)

    def unary_rate(self, seconds: float) -> float:
        """Images/s of unary Classify calls of one cell each (batch 1)."""

        async def calls() -> int:
            started, n = time.perf_counter(), 0
            while time.perf_counter() - started < seconds:
                request = inference_pb2.ClassifyRequest(
                    cells=[self.refs[n % len(self.refs)]], model_version=self.version
                )
                await self.stub.Classify(request)
                n += 1
            return n

        started = time.perf_counter()
        n = self.loop.run_until_complete(calls())
        return n / (time.perf_counter() - started)

    def close(self) -> None:
        self.loop.run_until_complete(self.channel.close())
        self.loop.close()


def ratio_figures(out: dict, name: str, over: list[float], under: list[float]) -> None:
    """The ratio of the medians, and its range over the rounds (each round's own ratio)."""
    per_round = [a / b for a, b in zip(over, under, strict=True)]
    out[name] = float(np.median(over) / np.median(under))
    out[f"{name}_min"], out[f"{name}_max"] = min(per_round), max(per_round)


def measure(model: torch.nn.Module, onnx: bytes, size: int, client: ServedClient) -> dict:
    """PyTorch eager (``model``: the exported computation, pixels in, probabilities out),
    ONNX Runtime on the same ready uint8 tensors, and the service over gRPC,
    measured in alternation (``ROUNDS`` rounds), so that a machine whose speed drifts during
    the run affects all three alike; the medians are reported, and the ratios per round."""
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    client.stream_rate()  # warm-up: page cache, the service's first session runs
    out: dict = {}
    for batch in (1, 64):
        x = np.random.default_rng(0).integers(0, 256, (batch, 3, size, size), dtype=np.uint8)
        xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        rates: dict[str, list[float]] = {"torch_eager": [], "onnxruntime": [], "served_grpc": []}
        with torch.inference_mode():
            for _ in range(ROUNDS):
                rates["torch_eager"].append(rate(lambda xt=xt: model(xt), batch, SECONDS / 2))
                rates["onnxruntime"].append(
                    rate(lambda x=x: session.run(None, {"image": x}), batch, SECONDS / 2)
                )
                rates["served_grpc"].append(
                    client.stream_rate() if batch == 64 else client.unary_rate(SECONDS / 2)
                )
        for name, values in rates.items():
            out[f"{name}_b{batch}"] = float(np.median(values))
        ratio_figures(
            out, f"onnxruntime_over_torch_b{batch}", rates["onnxruntime"], rates["torch_eager"]
        )
        ratio_figures(
            out, f"served_over_onnxruntime_b{batch}", rates["served_grpc"], rates["onnxruntime"]
        )
    return out


def stage_costs(
    blobs: list[bytes], spec: InputSpecData, store: FilesystemObjectStore, keys: list[str]
) -> dict:
    """Single-thread cost per image of each serving stage (as in decode_for_model), in ms."""
    t0 = time.perf_counter()
    for key in keys:
        store.get(key)
    t1 = time.perf_counter()
    decoded = [decode_pil_image(b, reduce_to=spec.size) for b in blobs]
    t2 = time.perf_counter()
    for d in decoded:
        preprocess_image(d.image, spec, d.source_size)
    t3 = time.perf_counter()
    n = len(blobs)
    return {
        "fetch_ms": 1000 * (t1 - t0) / n,
        "decode_ms": 1000 * (t2 - t1) / n,
        "preprocess_ms": 1000 * (t3 - t2) / n,
    }


def start_service(dsn: str, store_root: Path, port: int, pixel_cache_mb: int) -> subprocess.Popen:
    env = dict(
        os.environ,
        MARROWSCOPE_DB_DSN=dsn,
        MARROWSCOPE_STORE_BACKEND="fs",
        MARROWSCOPE_STORE_ROOT=str(store_root),
        MARROWSCOPE_INFERENCE_PORT=str(port),
        MARROWSCOPE_INFERENCE_PREFER_CUDA="false",
        MARROWSCOPE_INFERENCE_PIXEL_CACHE_MB=str(pixel_cache_mb),
        GRPC_ALLOW_PLAINTEXT="true",  # loopback, nothing else on it: the service's cost only
    )
    return subprocess.Popen(
        [sys.executable, "-m", "marrowscope.inference"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def two_versions(
    address: str,
    pool: DictPool,
    store: FilesystemObjectStore,
    taxonomy: Taxonomy,
    spec: InputSpecData,
    args: argparse.Namespace,
    version: str,
    keys: list[str],
) -> dict:
    """Serving two versions alternately (consecutive requests of one stream name either; the
    service batches per version) against one version, in alternating rounds (medians)."""
    torch.manual_seed(1)
    other_model = build_model("se_cnn", len(taxonomy.codes), width=args.width).eval()
    with pool.connection() as conn:
        other = register_model_version(
            conn,
            store,
            NewModelVersion(
                onnx_bytes=export_onnx(other_model, spec),
                weights_bytes=b"",
                taxonomy=taxonomy.name,
                class_codes=taxonomy.codes,
                architecture="se_cnn",
                input_spec=spec,
                training_set_hash="bench-second",
            ),
        )
    client = ServedClient(address, keys)
    try:
        client.load(other)
        client.load(version)
        single, double = [], []
        for _ in range(3):
            single.append(client.stream_rate())
            double.append(client.stream_rate([version, other]))
    finally:
        client.close()
    one, two = float(np.median(single)), float(np.median(double))
    return {
        "served_one_version_b64": one,
        "served_two_versions_b64": two,
        "two_over_one": two / one,
    }


def crops_and_cache(
    address: str, cached_address: str, version: str, jpeg_keys: list[str], png_keys: list[str]
) -> dict:
    """Two serving cases beside the headline (medians of 3 streams, after the rounds):
    the crops the segmentation service stores (PNG, see :func:`segmentation_crops`), decoded
    cold and cycled to the JPEG stream's number of cells; and cells the service has classified
    before, from its pixel cache (as in every SSL round after the first)."""
    out: dict = {}
    for name, address_, keys in (
        ("served_png_crops_b64", address, png_keys),
        ("served_pixel_cache_b64", cached_address, jpeg_keys),
    ):
        client = ServedClient(address_, [keys[i % len(keys)] for i in range(len(jpeg_keys))])
        try:
            client.load(version)
            client.stream_rate()  # warm-up: page cache; fills the pixel cache where it is on
            out[name] = float(np.median([client.stream_rate() for _ in range(3)]))
        finally:
            client.close()
    return out


def wait_serving(port: int) -> None:
    for _ in range(100):
        if asyncio.run(check_health(f"127.0.0.1:{port}")) == "SERVING":
            return
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--cells", type=int, default=1024)
    args = parser.parse_args()
    files = sorted(PBC.glob("*/*.jpg"))[:: max(1, len(list(PBC.glob("*/*.jpg"))) // args.cells)]
    files = files[: args.cells]
    if not files:
        print(f"no PBC images under {PBC}; nothing measured")
        return 1
    blobs = [f.read_bytes() for f in files]
    taxonomy = load_taxonomy("pbc11")
    torch.set_num_threads(os.cpu_count() or 1)
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
        },
        "width": args.width,
        "cells": len(blobs),
        "sizes": {},
    }
    db = f"marrowscope_bench_{uuid.uuid4().hex[:8]}"
    create_database(ADMIN_DSN, db)
    dsn = psycopg.conninfo.make_conninfo(ADMIN_DSN, dbname=db)
    with tempfile.TemporaryDirectory() as tmp:
        store = FilesystemObjectStore(Path(tmp) / "store")
        keys = [put_content_addressed(store, "cells", b, "image/jpeg", ".jpg").key for b in blobs]
        png_blobs = segmentation_crops(len(blobs))
        if not png_blobs:
            print(f"no TXL-PBC fields under {TXL_PBC}; nothing measured")
            return 1
        results["segmentation_crops"] = len(png_blobs)
        png_keys = [
            put_content_addressed(store, "cells", b, "image/png", ".png").key for b in png_blobs
        ]
        pool = open_pool(DatabaseSettings(dsn=dsn))
        port = 50000 + os.getpid() % 10000
        # The headline service decodes every cell (pixel cache off); a second one caches.
        services = [
            start_service(dsn, Path(tmp) / "store", port, pixel_cache_mb=0),
            start_service(dsn, Path(tmp) / "store", port + 1, pixel_cache_mb=512),
        ]
        try:
            wait_serving(port)
            wait_serving(port + 1)
            for size in (96, 128):
                spec = InputSpecData(size=size)
                torch.manual_seed(0)
                model = build_model("se_cnn", len(taxonomy.codes), width=args.width).eval()
                onnx = export_onnx(model, spec)
                weights = io.BytesIO()
                torch.save(model.state_dict(), weights)
                with pool.connection() as conn:
                    version = register_model_version(
                        conn,
                        store,
                        NewModelVersion(
                            onnx_bytes=onnx,
                            weights_bytes=weights.getvalue(),
                            taxonomy=taxonomy.name,
                            class_codes=taxonomy.codes,
                            architecture="se_cnn",
                            input_spec=spec,
                            training_set_hash="bench",
                        ),
                    )
                flops = count_flops(model, size)
                client = ServedClient(f"127.0.0.1:{port}", keys)
                try:
                    client.load(version)
                    eager = torch.nn.Sequential(
                        PixelInput(spec.mean, spec.std), WithSoftmax(model)
                    ).eval()
                    eager = eager.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
                    figures = measure(eager, onnx, size, client)
                finally:
                    client.close()
                figures.update(
                    crops_and_cache(
                        f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}", version, keys, png_keys
                    )
                )
                figures.update(
                    two_versions(
                        f"127.0.0.1:{port}", pool, store, taxonomy, spec, args, version, keys
                    )
                )
                for name in ("served_png_crops", "served_pixel_cache"):
                    figures[f"{name}_over_onnxruntime_b64"] = (
                        figures[f"{name}_b64"] / figures["onnxruntime_b64"]
                    )
                figures.update(stage_costs(blobs[:300], spec, store, keys[:300]))
                figures.update(
                    {
                        f"png_{k}": v
                        for k, v in stage_costs(
                            png_blobs[:300], spec, store, png_keys[:300]
                        ).items()
                    }
                )
                figures["gflop_per_image"] = flops / 1e9
                figures["onnxruntime_gflops_b64"] = figures["onnxruntime_b64"] * flops / 1e9
                figures["torch_gflops_b64"] = figures["torch_eager_b64"] * flops / 1e9
                figures["model_ms_b64"] = 1000 / figures["onnxruntime_b64"]
                results["sizes"][str(size)] = {k: round(v, 4) for k, v in figures.items()}
        finally:
            for service in services:
                service.terminate()
                service.wait(10)
            pool.close()
            drop_database(ADMIN_DSN, db)
    # Training speed at CPU scale (augmentation included), on ready tensors.
    spec = InputSpecData(size=96)
    x = np.random.default_rng(0).integers(0, 256, (512, 3, 96, 96), dtype=np.uint8)
    y = np.random.default_rng(0).integers(0, len(taxonomy.codes), 512)
    started = time.perf_counter()
    train(
        x,
        y,
        x[:32],
        y[:32],
        len(taxonomy.codes),
        spec,
        HyperParameters(epochs=2, input_size=96, width=args.width),
    )
    results["training_images_per_s_96px"] = round(1024 / (time.perf_counter() - started), 1)
    print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "classifier.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS / 'classifier.json'}")
    return 0


def print_table(results: dict) -> None:
    print(
        f"SE-CNN width {results['width']}, {results['cells']} PBC cells, "
        f"{results['machine']['cpus']} CPUs"
    )
    for size, f in results["sizes"].items():
        print(f"\n{size} px ({f['gflop_per_image']:.3f} GFLOP/image)            batch 1   batch 64")
        for label, key in (
            ("PyTorch eager", "torch_eager"),
            ("ONNX Runtime, ready tensors", "onnxruntime"),
            ("service over gRPC, decode incl.", "served_grpc"),
        ):
            print(f"  {label:<32}{f[key + '_b1']:>8.0f}{f[key + '_b64']:>11.0f} img/s")
        print(
            f"  achieved GFLOP/s at batch 64: ONNX Runtime {f['onnxruntime_gflops_b64']:.0f}, "
            f"PyTorch {f['torch_gflops_b64']:.0f}"
        )
        for label, key, target in (
            ("served / ONNX Runtime", "served_over_onnxruntime_b64", 0.6),
            ("ONNX Runtime / PyTorch", "onnxruntime_over_torch_b64", 2),
        ):
            print(
                f"  {label} {f[key]:.2f}x at batch 64 (target >= {target}; "
                f"{f[key + '_min']:.2f}-{f[key + '_max']:.2f}x over {ROUNDS} alternating rounds)"
            )
        print(
            f"  per image, one thread: fetch {f['fetch_ms']:.2f} ms, decode {f['decode_ms']:.2f} ms, "
            f"preprocess {f['preprocess_ms']:.2f} ms, model (b64) {f['model_ms_b64']:.2f} ms"
        )
        print(
            f"  segmentation's PNG crops of TXL-PBC fields: served {f['served_png_crops_b64']:.0f} img/s "
            f"({f['served_png_crops_over_onnxruntime_b64']:.2f}x); per image decode "
            f"{f['png_decode_ms']:.2f} ms, preprocess {f['png_preprocess_ms']:.2f} ms"
        )
        print(
            f"  cells seen before (pixel cache): served {f['served_pixel_cache_b64']:.0f} img/s "
            f"({f['served_pixel_cache_over_onnxruntime_b64']:.2f}x)"
        )
        print(
            f"  two versions served alternately: {f['served_two_versions_b64']:.0f} img/s, "
            f"{f['two_over_one']:.3f}x one version ({f['served_one_version_b64']:.0f}; "
            "target >= 0.9)"
        )
    print(
        f"\nsegmentation crops: {results['segmentation_crops']} cells cut by stain-v3 from TXL-PBC "
        "fields (cycled to the JPEG stream's length)"
    )
    print(f"\ntraining at 96 px: {results['training_images_per_s_96px']:.0f} images/s")


if __name__ == "__main__":
    sys.exit(main())
