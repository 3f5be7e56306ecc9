"""``spex-monitor baseline``: show, export, import or build (from stored windows) a model's baseline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_connect import duration
from .cli_connect import stub as connect


def baseline_command(args: argparse.Namespace) -> int:
    """``spex-monitor baseline show|export|import|build``: exit 0, or 1 naming the gRPC status on failure."""
    import time

    import grpc

    from .monitor import InteractionMap
    from .protocol.v1 import monitor_pb2 as pb

    stub = connect(args)
    try:
        if args.action in ("show", "export"):
            reply = stub.GetInteractionMap(
                pb.GetInteractionMapRequest(model=args.model, version=args.version, baseline=True), timeout=30
            )
            if args.action == "export":
                Path(args.file).write_bytes(reply.map)
                print(f"wrote {args.file}: {reply.requests:.0f} requests, {reply.key_tuples} key tuples")
                return 0
            baseline = InteractionMap.from_bytes(reply.map)
            count = f"{baseline.requests:.0f} explained requests, {len(baseline)} key tuples"
            print(f"{args.model} baseline: {count}")
            shares = baseline.order_shares()
            print(f"  order shares: 1st {shares[1]:.2f}, 2nd {shares[2]:.2f}, 3rd+ {shares[3]:.2f}")
            strongest = sorted(
                (k for k in baseline.stats if len(k) >= 2), key=lambda k: -baseline.strength(k)
            )
            for key in strongest[:10]:
                print(f"  {' × '.join(key):<32}{baseline.strength(key):>8.3f}")
            return 0
        request = pb.SetBaselineRequest(model=args.model, version=args.version)
        if args.action == "import":
            request.map = Path(args.file).read_bytes()
        else:  # build
            now = time.time()
            request.time_range.since_unix = now - duration(args.since)
            request.time_range.until_unix = now
        reply = stub.SetBaseline(request, timeout=60)
        print(
            f"baseline set from {reply.source}: {reply.requests:.0f} requests, {reply.key_tuples} key tuples"
        )
        return 0
    except grpc.RpcError as error:
        print(f"spex-monitor baseline {args.action}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
