"""``spex-monitor``: the command line. Grows with the sidecar; today: ``config check`` and ``demo``."""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError, load_settings


def _config_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    names = ", ".join(f"{m.name}@{m.version} ({m.backend.kind})" for m in settings.models)
    print(
        f"{args.file}: OK — models: {names}; engine {settings.engine.kind} budget {settings.engine.budget}; "
        f"gRPC {settings.server.host}:{settings.server.grpc_port}, metrics :{settings.server.metrics_port}"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import main as demo_main

    return demo_main([f"--seed={args.seed}"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spex-monitor",
        description="Interaction-shift monitoring for served models (SPEX / ProxySPEX ablations).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser(
        "check", help="validate a config file (plus SPEX_MONITOR_* overrides); exit 2 with the bad fields"
    )
    check.add_argument("file", help="YAML configuration file")
    check.set_defaults(func=_config_check)
    demo = commands.add_parser("demo", help="run the offline demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
