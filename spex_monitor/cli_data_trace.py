"""``spex-monitor trace --data``: from the alarm's top key tuple and an exemplar request to the training
groups and examples that make the tuple decisive (the data lens, :mod:`.lenses.data_trace`).

The data lens runs here, in the CLI's process, never in the sidecar: it imports the model's training-set
factory (``models[].training`` of the sidecar's YAML, or ``--training``) and retrains its head once per mask.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path.home() / ".cache" / "spex-monitor" / "data-trace"


class DataTraceError(Exception):
    """A ``trace --data`` request that cannot run; the message says what to give."""


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The ``--data`` options of ``spex-monitor trace``."""
    group = parser.add_argument_group(
        "data lens (--data)",
        "name the training groups and examples behind the alarm's top tuple by retraining the model's head "
        "on subsets of its training set (models[].training in --config, or --training); one retrain per mask",
    )
    group.add_argument("--data", action="store_true", help="run the data lens after the trace")
    group.add_argument("--config", default="", help="the sidecar's YAML (for models[].training)")
    group.add_argument(
        "--training",
        default="",
        metavar="MODULE:FUNCTION",
        help="training-set factory (overrides the config)",
    )
    group.add_argument(
        "--tuple",
        default=None,
        metavar="WORD,WORD",
        help="the key tuple to trace (default: the alarm's top decisive tuple, else its top contributor)",
    )
    group.add_argument(
        "--text",
        default=None,
        help="the exemplar request (default: the newest of the stored requests where the tuple was among "
        "the strongest terms, with its text kept: needs store.store_text)",
    )
    group.add_argument(
        "--data-budget", type=budget_arg, default=0, help="retrains over groups, 64-100000 (default: config)"
    )
    group.add_argument(
        "--cache-dir", default="", help=f"result cache (default: config, else {DEFAULT_CACHE})"
    )
    group.add_argument(
        "--refresh", action="store_true", help="recompute the data lens even when a cached result exists"
    )


def budget_arg(text: str) -> int:
    """argparse type of ``--data-budget``: an integer from 64 to 100,000."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 64 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of retrains from 64 to 100000")
    return value


def parse_tuple(text: str) -> tuple[str, ...]:
    """``--tuple a,b``: the monitor keys of 1–6 distinct comma-separated words.

    Raises:
        DataTraceError: an empty tuple, a repeated word or more than 6.
    """
    from .keys import normalize_key

    keys = tuple(normalize_key(k) for k in text.split(",") if k.strip())
    if not 1 <= len(keys) <= 6 or len(set(keys)) != len(keys):
        raise DataTraceError(f"--tuple {text!r}: give 1 to 6 distinct comma-separated words, e.g. music,love")
    return keys


def check_flags(args: argparse.Namespace) -> None:
    """Refuse data-lens flags without ``--data``, and ``--data`` with ``--request``.

    Raises:
        DataTraceError: naming the flag.
    """
    if getattr(args, "data", False):
        if args.request:
            raise DataTraceError("--data traces the alarm's tuple: it does not combine with --request")
        return
    flags = (("--tuple", args.tuple), ("--text", args.text), ("--training", args.training),
             ("--data-budget", args.data_budget), ("--cache-dir", args.cache_dir),
             ("--refresh", args.refresh))  # fmt: skip
    given = [flag for flag, value in flags if value]
    if given:
        raise DataTraceError(f"{given[0]} is a data-lens option: add --data")


def pick_tuple(report: Any) -> tuple[str, ...]:
    """The alarm's top tuple: its strongest decisive tuple when the decisive test found one, else its top
    contributor's keys.

    Raises:
        DataTraceError: the report names no tuple.
    """
    if len(report.decisive_tuples):
        return tuple(report.decisive_tuples[0].keys)
    if len(report.top_contributors):
        return tuple(report.top_contributors[0].keys)
    raise DataTraceError("the report names no interaction to trace; give --tuple")


def find_exemplar(stub: Any, model: str, keys: tuple[str, ...]) -> str:
    """The stored text of the newest explained request that holds every key (at most 10 looked up).

    Raises:
        DataTraceError: none stored with its text.
    """
    from .protocol.v1 import monitor_pb2 as pb
    from .trace_text import fetch_explanation

    found = stub.ListExplanations(
        pb.ListExplanationsRequest(model=model, key_tuple=list(keys), limit=10), timeout=30
    ).explanations
    for summary in sorted(found, key=lambda s: -s.time_unix):
        stored = fetch_explanation(stub, model, summary.request_id)
        if stored is not None and stored.text_stored and stored.text:
            return stored.text
    raise DataTraceError(
        f"no stored request text holds {' × '.join(keys)} (store.store_text is off, the text expired, "
        "or none was explained); give --text"
    )


def training_options(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The factory and the data lens's options from ``--training``/``--config`` and the flags.

    Raises:
        DataTraceError: neither given, or the model has no ``training`` section.
    """
    options: dict[str, Any] = {"budget": 1000, "row_budget": 300, "top_groups": 3, "cache_dir": None}
    factory = args.training
    if args.config:
        from .config import ConfigError, load_settings

        try:
            settings = load_settings(args.config)
        except ConfigError as error:
            raise DataTraceError(str(error)) from error
        model = next((m for m in settings.models if m.name == args.model), None)
        if model is None:
            raise DataTraceError(f"{args.config}: no model named {args.model!r}")
        if model.training is not None:
            factory = factory or model.training.factory
            options.update(model.training.model_dump(exclude={"factory"}))
        elif not factory:
            raise DataTraceError(
                f"{args.config}: models[{args.model}].training is not set; add it or give --training"
            )
    if not factory:
        raise DataTraceError(
            "--data needs the model's training set: --config sidecar.yaml or --training MODULE:FN"
        )
    if args.data_budget:
        options["budget"] = args.data_budget
    if args.cache_dir:
        options["cache_dir"] = Path(args.cache_dir)
    options["cache_dir"] = Path(options["cache_dir"] or DEFAULT_CACHE)
    return factory, options


def run_data_trace(args: argparse.Namespace, stub: Any, report: Any) -> Any:
    """Resolve the tuple, exemplar and training set, run the data lens (progress on stderr) and print what it
    found. Returns the :class:`~spex_monitor.lenses.data_trace.DataTrace`.

    Raises:
        DataTraceError: what is missing or wrong, said as a one-line fix.
    """
    from .lenses.data_trace import check_budgets, trace_training_data, writable
    from .lenses.training import load_training_set

    factory, options = training_options(args)
    try:  # what can be checked here is checked before the sidecar is asked for an exemplar
        check_budgets(options["budget"], options["row_budget"])
        writable(options["cache_dir"])
        training = load_training_set(factory)
    except ValueError as error:
        raise DataTraceError(str(error)) from error
    keys = parse_tuple(args.tuple) if args.tuple is not None else pick_tuple(report)
    text = args.text if args.text is not None else find_exemplar(stub, args.model, keys)

    stages: list[str] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stages and stages[-1] != stage:
            print("", file=sys.stderr)
        stages.append(stage)
        print(f"\r  data lens: {stage} {done}/{total} retrains", end="", file=sys.stderr, flush=True)

    rows = f" + {options['row_budget']} over rows" if options["row_budget"] else ""
    print(f"\ndata lens: {' × '.join(keys)} on {text!r}, over {training.name} "
          f"(at most {options['budget']} retrains over groups{rows})…", file=sys.stderr)  # fmt: skip
    try:
        result = trace_training_data(training, text, keys, progress=progress, refresh=args.refresh, **options)
    except ValueError as error:
        print("", file=sys.stderr)
        raise DataTraceError(str(error)) from error
    except Exception as error:  # the user's featurizer or head failed: say so in one line
        print("", file=sys.stderr)
        raise DataTraceError(f"the training set's code failed: {type(error).__name__}: {error}") from error
    print("", file=sys.stderr)
    print(render_data_trace(result))
    return result


def render_data_trace(result: Any, groups: int = 8, examples: int = 5) -> str:
    """The text of a :class:`~spex_monitor.lenses.data_trace.DataTrace`: the effect, top groups, group
    pairs and top examples."""
    keys = " × ".join(result.keys)
    how = "from the cache" if result.cached else f"{result.retrains} retrains in {result.seconds:.1f} s"
    jointly = "jointly (beyond each word alone)" if len(result.keys) > 1 else "(removing it)"
    lines = [
        f"\ntraining data behind {keys} ({result.training_set}; {how}, "
        f"held-out R² {result.faithfulness:.2f})",
        f"  on {result.exemplar!r}: with all the data the head predicts {result.target_name}, "
        f"and {keys} moves its log-odds by {result.effect_all:+.3f} {jointly}",
        f"  {'group':<20}{'banzhaf':>9}  {'rows':>5}  rows holding every word of {keys}",
    ]
    for g in result.groups[:groups]:
        held = ", ".join(f"row {r}" for r in g.tuple_rows[:4]) + (" …" if len(g.tuple_rows) > 4 else "")
        lines.append(f"  {g.group:<20}{g.banzhaf:>+9.3f}  {g.rows:>5}  {len(g.tuple_rows)}  {held}".rstrip())
    if result.group_pairs:
        a, b, v = result.group_pairs[0]
        meaning = "either one does most of it: redundant" if v < 0 else "they matter together"
        lines.append(f"  strongest group pair: {a} × {b} {v:+.3f} ({meaning})")
    if result.examples:
        lines.append("  examples of the top groups (banzhaf, training label, text):")
        for e in result.examples[:examples]:
            label = result.label_name(e.label)
            lines.append(f"    {e.banzhaf:+.3f}  {label:<9} row {e.row} ({e.group}): {e.text}")
    lines.append(
        "  (banzhaf: how much a group's presence moves the tuple's joint effect, averaged over the other "
        "groups, in log-odds; positive drives it)"
    )
    lines.append(
        "  next: read the top rows' labels; retrain without the top groups and check that the effect drops "
        f"({keys} should stop deciding the exemplar); then remove or relabel those rows"
    )
    return "\n".join(lines)
