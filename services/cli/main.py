"""``marrowscope``: run the local stack and its demo.

marrowscope up [--detach]      start every service (embedded PostgreSQL and store by default)
marrowscope status [--json]    each service's health
marrowscope restart SERVICE    (re)start one service, leaving the others alone
marrowscope down               stop everything
marrowscope demo               up, a short demo campaign, the per-round table, down
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from marrowscope.core.clients import ServiceClients
from marrowscope.core.objectstore import open_store
from marrowscope.core.settings import ObjectStoreSettings, PeerSettings

from . import stack
from .bootstrap import ensure_model


def _peers(state: dict) -> PeerSettings:
    p = state["ports"]
    return PeerSettings(**{f"{s}_addr": f"127.0.0.1:{p[s]}" for s in stack.GRPC_SERVICES})


def _store(state: dict):  # type: ignore[no-untyped-def]
    env = state["env"]
    return open_store(
        ObjectStoreSettings(**{k.removeprefix("MARROWSCOPE_STORE_").lower(): v
                               for k, v in env.items() if k.startswith("MARROWSCOPE_STORE_")})
    )  # fmt: skip


async def _with_clients(state: dict, work):  # type: ignore[no-untyped-def]
    clients = ServiceClients(_peers(state))
    try:
        return await work(clients)
    finally:
        await clients.close()


def _print_addresses(state: dict) -> None:
    print("Marrowscope is up:")
    for service, port in state["ports"].items():
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
                _with_clients(state, lambda c: ensure_model(c, _store(state), quiet=args.quiet))
            )
        except BaseException:
            stack.down(paths)
            raise
        print(f"serving model {name}", file=sys.stderr)
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
            print(f"{service:<13} {info['health']:<12} pid {info['pid']:<8} {info['address']}")
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

        async def work(clients: ServiceClients):  # type: ignore[no-untyped-def]
            store = _store(state)
            name = await ensure_model(clients, store)
            print(f"serving model {name}")
            return await run_demo(clients, store, secrets["admin_token"], args.per_class,
                                  args.rounds, args.epochs, args.method, args.seed)  # fmt: skip

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marrowscope", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--home", type=Path, default=stack.default_home(),
                        help="state folder (default .marrowscope, or $MARROWSCOPE_HOME)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    def stack_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dsn", help="PostgreSQL DSN (default: $MARROWSCOPE_DB_DSN, else embedded)")
        p.add_argument("--port-base", type=int,
                       help="consecutive ports from here instead of the defaults")  # fmt: skip

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
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except stack.StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
