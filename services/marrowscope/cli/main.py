"""``marrowscope``: run the local stack and its demo.

marrowscope up [--detach]      start every service (embedded PostgreSQL and store by default)
marrowscope status [--json]    each service's health
marrowscope restart SERVICE    (re)start one service, leaving the others alone
marrowscope down               stop everything
marrowscope demo               up, a short demo campaign, the per-round table, down
                               (--expert ui: you are the expert, in the web UI)
marrowscope train --data DIR   train on an image folder through the training service
marrowscope evaluate ...       accuracy, per-class recall / precision, confusion matrix
marrowscope segment IN... --out DIR [--overlay] [--model FILE]   cell crops and boxes
marrowscope train-segmenter --data DIR --out FILE  field U-Net from YOLO boxes, as ONNX
marrowscope experiment --data DIR --out DIR      every SSL method, Table 1, plots, HTML report
marrowscope gpu-check [--json FILE]              is the classifier served on CUDA here? speed
marrowscope audit verify [--dsn DSN] [--json]    is the audit trail's hash chain intact?
marrowscope certificates --out DIR [--host H]    a CA and mutual-TLS certificates by hand
marrowscope backup --out DIR / restore --from DIR  the database and every object
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from marrowscope.core.clients import ServiceClients
from marrowscope.core.errors import MarrowscopeError
from marrowscope.core.pixel_size import check_um_per_px
from marrowscope.core.pki import ensure_local_pki
from marrowscope.core.settings import PeerSettings
from marrowscope.v1 import training_pb2

from . import audit, backup, models, stack
from .bootstrap import ensure_model

T = TypeVar("T")


def _peers(state: dict) -> PeerSettings:
    return stack.peer_settings(state, "admin")


async def _with_clients(state: dict, work: Callable[[ServiceClients], Awaitable[T]]) -> T:
    clients = ServiceClients(_peers(state))
    try:
        return await work(clients)
    finally:
        await clients.close()


def _production_line(name: str) -> str:
    if name:
        return f"production model (what the LIS uses): {name}"
    return (
        "no production model: the LIS waits until one is promoted "
        "(marrowscope models list; marrowscope models promote VERSION --reason TEXT)"
    )


def _print_addresses(state: dict) -> None:
    print("Marrowscope is up:")
    for service, port in state["ports"].items():
        if service == "curation_http":
            print(f"  {'curation UI':<13} http://127.0.0.1:{port}/ui/  (sign in with a user token)")
            continue
        if service.endswith("_metrics"):
            continue  # `marrowscope status` lists the metrics URLs
        scheme = "http://" if service == "lis_api" else "grpc "
        print(f"  {service:<13} {scheme}127.0.0.1:{port}")
    print(f"  logs          {Path(state['home']) / 'logs'}")
    print(f"  credentials   {Path(state['home']) / 'secrets.json'}")


def cmd_up(args: argparse.Namespace) -> int:
    paths = stack.StackPaths(args.home)
    print("starting services...", file=sys.stderr)
    state = stack.up(paths, args.dsn, args.port_base)
    if not args.skip_model:
        try:
            name = asyncio.run(
                _with_clients(
                    state, lambda c: ensure_model(c, stack.stack_store(state), quiet=args.quiet)
                )
            )
        except BaseException:
            stack.down(paths)
            raise
        print(_production_line(name), file=sys.stderr)
    _print_addresses(state)
    if args.detach:
        return 0
    print("press Ctrl-C to stop", file=sys.stderr)
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        stack.down(paths)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stopped = stack.down(stack.StackPaths(args.home))
    print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    result = asyncio.run(stack.status(stack.StackPaths(args.home)))
    if args.json:
        print(json.dumps(result, indent=2))
    elif not result:
        print("no stack is running (start one with `marrowscope up`)")
    else:
        for service, info in result.items():
            print(
                f"{service:<13} {info['health']:<12} pid {info['pid']:<8} {info['address']:<16}"
                f" {info['metrics']}"
            )
    healthy = bool(result) and all(i["health"] == "SERVING" for i in result.values())
    return 0 if healthy else 1


def cmd_restart(args: argparse.Namespace) -> int:
    pid = stack.restart_service(stack.StackPaths(args.home), args.service)
    print(f"{args.service} serving again (pid {pid})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import round_table, run_demo

    paths = stack.StackPaths(args.home)
    print("starting the local stack (embedded PostgreSQL and object store)...")
    state = stack.up(paths, args.dsn, args.port_base)
    try:
        secrets = stack.load_secrets(paths)

        async def work(clients: ServiceClients) -> Any:
            store = stack.stack_store(state)
            name = await ensure_model(clients, store)
            print(_production_line(name))
            ui_url = (
                f"http://127.0.0.1:{state['ports']['curation_http']}" if args.expert == "ui" else ""
            )
            return await run_demo(
                clients,
                store,
                secrets["admin_token"],
                args.per_class,
                args.rounds,
                args.epochs,
                args.method,
                args.seed,
                ui_url,
            )

        campaign = asyncio.run(_with_clients(state, work))
        print()
        print(round_table(campaign))
        print()
        if campaign.error:
            print(f"campaign failed: {campaign.error}")
            return 1
    finally:
        stack.down(paths)
        print("stack stopped")
    return 0


def _running_state(home: Path) -> dict:
    state = stack.read_state(stack.StackPaths(home))
    if not state:
        raise SystemExit("no stack is running: start one with `marrowscope up --detach`")
    return state


def cmd_models(args: argparse.Namespace) -> int:
    state = _running_state(args.home)
    return asyncio.run(
        _with_clients(state, lambda c: models.run(c, stack.stack_store(state), args))
    )


def cmd_train(args: argparse.Namespace) -> int:
    from .ml import TrainOptions, train_folder

    state = _running_state(args.home)
    options = TrainOptions(
        data=args.data,
        mapping=args.mapping,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        width=args.width,
        validation=args.validation,
        limit_per_class=args.limit_per_class,
        seed=args.seed,
        parent=args.parent,
        early_stopping=args.early_stopping,
        lr_schedule=args.lr_schedule,
        precise_bn_images=args.precise_bn_images,
        center_crop=args.center_crop,
    )
    job = asyncio.run(
        _with_clients(state, lambda c: train_folder(c, stack.stack_store(state), options))
    )
    if job.state != training_pb2.TRAINING_JOB_STATE_SUCCEEDED:
        print(f"training failed: {job.error or training_pb2.TrainingJobState.Name(job.state)}")
        return 1
    best = max((e.validation_accuracy for e in job.learning_curve), default=0.0)
    print(f"registered model version {job.model_version} (best validation accuracy {best:.4f})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .ml import evaluate_folder

    is_file = args.model.endswith(".onnx") and Path(args.model).is_file()
    if is_file:
        report = asyncio.run(
            evaluate_folder(
                None,
                None,
                args.data,
                args.mapping,
                args.model,
                args.image_size,
                args.taxonomy,
                args.center_crop,
            )
        )
    else:
        state = _running_state(args.home)
        report = asyncio.run(
            _with_clients(
                state,
                lambda c: evaluate_folder(
                    c,
                    stack.stack_store(state),
                    args.data,
                    args.mapping,
                    args.model,
                    args.image_size,
                    args.taxonomy,
                    args.center_crop,
                ),
            )
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    if args.html:
        from .report import write_evaluation_html

        print(f"wrote {write_evaluation_html(report, args.html)}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiment import METHODS, ExperimentOptions, run_experiment
    from .report import table, write_report

    methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise SystemExit(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    options = ExperimentOptions(
        data=args.data,
        mapping=args.mapping,
        methods=methods,
        rounds=args.rounds,
        image_size=args.image_size,
        epochs=args.epochs,
        width=args.width,
        initial_per_class=args.initial_per_class,
        validation_per_class=args.validation_per_class,
        test_per_class=args.test_per_class,
        sample_size=args.sample_size,
        class_cap=args.class_cap,
        seed=args.seed,
        expert_error=args.expert_error,
        too_difficult=args.too_difficult,
        hard_classes=[c for c in args.hard_classes.split(",") if c],
        hard_too_difficult=args.hard_too_difficult,
        center_crop=args.center_crop,
    )
    paths = stack.StackPaths(args.home)
    running = stack.read_state(paths)
    state = running or stack.up(paths, args.dsn, args.port_base)
    try:
        secrets = stack.load_secrets(paths)
        results = asyncio.run(
            _with_clients(
                state,
                lambda c: run_experiment(
                    c, stack.stack_store(state), secrets["admin_token"], options
                ),
            )
        )
    finally:
        if not running:
            stack.down(paths)
    report = write_report(results, args.out)
    print()
    print(table(results))
    print(f"\nreport: {report}")
    return 0 if all(m["state"] == "CAMPAIGN_STATE_COMPLETED" for m in results["methods"]) else 1


def cmd_segment(args: argparse.Namespace) -> int:
    from .segment import segment_files

    if args.um_per_px is not None:
        try:
            check_um_per_px(args.um_per_px)
        except MarrowscopeError as invalid:
            print(invalid)
            return 2
    summary = segment_files(args.inputs, args.out, args.overlay, args.model, args.um_per_px)
    print(
        f"{len(summary['cells'])} cells from {summary['images']} images "
        f"({summary['algorithm']}) -> {args.out}"
    )
    if summary["fields_not_analysable"]:
        print(
            f"{summary['fields_not_analysable']} fields not analysable (their cells must not be "
            f"counted; reasons in {args.out / 'fields.csv'})"
        )
    for path, error in summary["errors"].items():
        print(f"skipped {path}: {error}")
    return 0 if len(summary["errors"]) < summary["images"] else 1


def cmd_train_segmenter(args: argparse.Namespace) -> int:
    from .segmenter_training import train_segmenter_cli

    return train_segmenter_cli(args)


# gpu-check's exit status: 2 stays the CLI's "could not run" (bad input, service errors).
GPU_CHECK_EXIT = {"ok": 0, "parity-failed": 1, "not-on-cuda": 3}


def fresh_se_cnn(size: int, width: int, classes: int = 17) -> bytes:
    """An untrained SE-CNN exported as the training service exports it (seeded)."""
    import torch

    from marrowscope.core.preprocess import InputSpecData
    from marrowscope.training.model import build_model
    from marrowscope.training.trainer import export_onnx

    torch.manual_seed(0)
    return export_onnx(build_model("se_cnn", classes, width=width).eval(), InputSpecData(size))


def cmd_certificates(args: argparse.Namespace) -> int:
    pki = ensure_local_pki(args.out, hosts=args.host)
    print(f"CA and one certificate per identity in {pki.folder} (keys mode 0600).")
    print("Give each service its own, e.g. the inference service:")
    for name, value in pki.environment("inference").items():
        print(f"  {name}={value}")
    print("the LIS API 'lis-api', the CLI 'admin' (see SECURITY.md).")
    return 0


def cmd_gpu_check(args: argparse.Namespace) -> int:
    from marrowscope.inference.gpu_check import GpuCheckOptions, print_report, run_gpu_check
    from marrowscope.inference.settings import InferenceSettings

    options = GpuCheckOptions(
        sizes=tuple(args.sizes),
        batches=tuple(args.batches),
        width=args.width,
        seconds=args.seconds,
        model=args.model,
        data=args.data,
        tolerance=args.tolerance,
    )
    report = run_gpu_check(
        options,
        InferenceSettings(),
        lambda name: print(f"checking {name} ...", flush=True),
        fresh_model=fresh_se_cnn,
    )
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return GPU_CHECK_EXIT[report["verdict"]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marrowscope",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=stack.default_home(),
        help="state folder (default .marrowscope, or $MARROWSCOPE_HOME)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def stack_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dsn", help="PostgreSQL DSN (default: $MARROWSCOPE_DB_DSN, else embedded)")
        p.add_argument(
            "--port-base", type=int, help="consecutive ports from here instead of the defaults"
        )

    up = sub.add_parser("up", help="start the local stack")
    stack_options(up)
    up.add_argument("--detach", action="store_true", help="return once every service is SERVING")
    up.add_argument("--skip-model", action="store_true", help="do not train a first model")
    up.add_argument("--quiet", action="store_true")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the local stack").set_defaults(func=cmd_down)
    st = sub.add_parser("status", help="health of every service")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    rs = sub.add_parser("restart", help="(re)start one service")
    rs.add_argument("service", choices=stack.SERVICES)
    rs.set_defaults(func=cmd_restart)
    demo = sub.add_parser("demo", help="run a short demo campaign on generated data")
    stack_options(demo)
    demo.add_argument("--rounds", type=int, default=3)
    demo.add_argument("--epochs", type=int, default=10)
    demo.add_argument("--per-class", type=int, default=40)
    demo.add_argument("--method", default="CST_AL", choices=["ST", "CST", "AL", "CST_AL", "RANDOM"])
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--expert",
        default="simulated",
        choices=["simulated", "ui"],
        help="ui: you answer the review tasks in the curation web UI",
    )
    demo.set_defaults(func=cmd_demo)
    tr = sub.add_parser("train", help="train on an ImageFolder directory (needs `up --detach`)")
    tr.add_argument("--data", type=Path, required=True, help="DIR/<label>/*.jpg")
    tr.add_argument("--mapping", type=Path, help="JSON mapping folder labels to a taxonomy")
    tr.add_argument("--image-size", type=int, default=96)
    tr.add_argument("--epochs", type=int, default=30)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--width", type=int, default=16, help="channels of the first stage")
    tr.add_argument("--validation", type=float, default=0.15, help="fraction per class")
    tr.add_argument("--limit-per-class", type=int, default=0, help="cap training cells per class")
    tr.add_argument("--early-stopping", type=int, default=0, help="patience in epochs (0 = off)")
    tr.add_argument("--parent", default="", help="warm-start from this model version")
    tr.add_argument(
        "--lr-schedule",
        default="constant",
        choices=["constant", "cosine"],
        help="constant: the paper's; cosine anneals to 0 (steadier at CPU scale)",
    )
    tr.add_argument(
        "--precise-bn-images",
        type=int,
        help="BatchNorm statistics from this many images after each epoch "
        "(default 2048; 0 = running averages)",
    )
    tr.add_argument(
        "--center-crop",
        action="store_true",
        help="train on the central cell of each image, alone on the paper's black "
        "282 crop (cut by the segmentation service)",
    )
    tr.add_argument("--seed", type=int, default=0)
    tr.set_defaults(func=cmd_train)
    ev = sub.add_parser("evaluate", help="metrics of a model on a labelled ImageFolder directory")
    ev.add_argument("--model", required=True, help="a registered version, or a .onnx file")
    ev.add_argument("--data", type=Path, required=True)
    ev.add_argument("--mapping", type=Path)
    ev.add_argument("--json", type=Path, help="write the metrics and confusion matrix here")
    ev.add_argument(
        "--html",
        type=Path,
        help="a one-page report with the confusion matrix and recall / precision plots",
    )
    ev.add_argument("--image-size", type=int, default=96, help="for a .onnx file only")
    ev.add_argument("--taxonomy", default="", help="for a .onnx file: its class order")
    ev.add_argument(
        "--center-crop",
        action="store_true",
        help="classify the central cell of each image (for models trained with "
        "train --center-crop; registered versions only)",
    )
    ev.set_defaults(func=cmd_evaluate)
    ex = sub.add_parser("experiment", help="every SSL method on one folder: Table 1, plots, report")
    stack_options(ex)
    ex.add_argument("--data", type=Path, required=True, help="DIR/<label>/*.jpg")
    ex.add_argument("--mapping", type=Path)
    ex.add_argument("--methods", default="st,cst,al,cst+al,random")
    ex.add_argument("--rounds", type=int, default=10)
    ex.add_argument("--image-size", type=int, default=64)
    ex.add_argument("--epochs", type=int, default=8, help="per round (the paper: 250)")
    ex.add_argument("--width", type=int, default=16)
    ex.add_argument("--initial-per-class", type=int, default=25)
    ex.add_argument("--validation-per-class", type=int, default=50)
    ex.add_argument("--test-per-class", type=int, default=100)
    ex.add_argument("--sample-size", type=int, default=5000)
    ex.add_argument("--class-cap", type=int, default=1000)
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--expert-error", type=float, default=0.02)
    ex.add_argument("--too-difficult", type=float, default=0.02)
    ex.add_argument(
        "--hard-classes",
        default="MY,MMY,BNE,SNE,MC,MMC,BAND,SEG",
        help="classes the expert more often rejects as too difficult",
    )
    ex.add_argument("--hard-too-difficult", type=float, default=0.08)
    ex.add_argument("--center-crop", action="store_true", help="import centre-cell crops")
    ex.add_argument("--out", type=Path, required=True)
    ex.set_defaults(func=cmd_experiment)
    sg = sub.add_parser("segment", help="field images -> cell crops, boxes (JSON, CSV), overlays")
    sg.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    sg.add_argument("--out", type=Path, required=True)
    sg.add_argument("--overlay", action="store_true", help="also draw boxes and contours")
    sg.add_argument(
        "--model", type=Path, help="a U-Net from train-segmenter instead of the shipped one"
    )
    sg.add_argument(
        "--um-per-px",
        type=float,
        help="the images' pixel size in micrometres, when known (else measured on red cells)",
    )
    sg.set_defaults(func=cmd_segment)
    ts = sub.add_parser(
        "train-segmenter", help="train the field U-Net on YOLO-annotated fields, export ONNX"
    )
    ts.add_argument("--data", type=Path, required=True, help="DIR/images/*.jpg + DIR/labels/*.txt")
    ts.add_argument(
        "--validation",
        type=Path,
        help="held-out fields (same layout); default: a seeded fifth of --data",
    )
    ts.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    ts.add_argument("--epochs", type=int, default=40)
    ts.add_argument("--image-size", type=int, default=128, help="side the field is resized to")
    ts.add_argument("--width", type=int, default=8, help="channels at full resolution")
    ts.add_argument("--seed", type=int, default=0)
    ts.add_argument(
        "--threads",
        type=int,
        default=0,
        help="PyTorch threads (0: its default); the same seed and threads give the same model",
    )
    ts.add_argument(
        "--augment",
        action="store_true",
        help="with the other-lab augmentation (scale, blur, vignetting, tint, hue, JPEG); "
        "not the default: it did not help on TXL-PBC val (docs/benchmarks.md)",
    )
    ts.set_defaults(func=cmd_train_segmenter)
    gc = sub.add_parser(
        "gpu-check",
        help="is the classifier on CUDA here? parity and images/s",
        description="Opens the classifier as the inference service does (its "
        "MARROWSCOPE_INFERENCE_* settings) and checks that it runs on the CUDA "
        "provider with the CPU's answers; measures both. Exit 0: on CUDA with "
        "parity; 1: parity failed; 3: not on CUDA (the reason says why).",
    )
    gc.add_argument(
        "--model",
        type=Path,
        help="an exported classifier .onnx (default: fresh SE-CNNs at --sizes)",
    )
    gc.add_argument("--data", type=Path, help="cell images for the parity check (default random)")
    gc.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 282])
    gc.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    gc.add_argument("--width", type=int, default=16, help="channels of the first stage")
    gc.add_argument("--seconds", type=float, default=3.0, help="per measured rate")
    gc.add_argument("--tolerance", type=float, default=1e-4, help="max |CUDA - CPU| probability")
    gc.add_argument("--json", type=Path, help="write the report here")
    gc.set_defaults(func=cmd_gpu_check)
    models.add_parser(sub, cmd_models)
    certs = sub.add_parser(
        "certificates",
        help="a CA and one mutual-TLS certificate per service, outside the local stack",
        description="For services run without `marrowscope up` or the Helm chart: creates a "
        "CA (once) and a certificate per identity (segmentation, inference, training, "
        "curation, orchestrator, lis-api, admin) in --out. Existing ones are kept.",
    )
    certs.add_argument("--out", type=Path, required=True, help="folder for the PEM files")
    certs.add_argument(
        "--host",
        action="append",
        default=[],
        help="a DNS name or IP address the services are reached by (repeatable)",
    )
    certs.set_defaults(func=cmd_certificates)
    audit.add_parser(sub)
    backup.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (stack.StackError, MarrowscopeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        print(f"error from a service: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
