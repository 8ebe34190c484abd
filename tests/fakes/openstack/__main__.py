"""Run the simulator standalone: `python -m tests.fakes.openstack --seed FILE --port N`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from .fixtures import DEFAULT_SEED, Simulator
from .tls import SelfSigned


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.openstack", description=__doc__)
    parser.add_argument("--seed", type=Path, default=DEFAULT_SEED, help="YAML/JSON seed file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--token-lifetime", type=float, default=None, help="seconds (overrides the seed)")
    parser.add_argument("--rng-seed", type=int, default=None, help="make random faults reproducible")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered 500")
    parser.add_argument(
        "--neutron-max-limit",
        type=int,
        default=1000,
        help="Neutron pagination_max_limit: listings page at this size even without `limit` (0: no cap)",
    )
    parser.add_argument("--tls-cert", type=Path, default=None)
    parser.add_argument("--tls-key", type=Path, default=None)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    ctx = SelfSigned(args.tls_cert, args.tls_key).server_context() if args.tls_cert and args.tls_key else None
    sim = Simulator(
        args.seed,
        rng_seed=args.rng_seed,
        token_lifetime=args.token_lifetime,
        ssl_context=ctx,
        neutron_max_limit=args.neutron_max_limit or None,
    )
    if args.latency:
        sim.faults.set_latency("*", args.latency)
    if args.error_rate:
        sim.faults.set_error_rate("*", args.error_rate)
    await sim.start(args.host, args.port)
    print(f"OpenStack simulator listening on {sim.url} (authURL {sim.auth_url})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
