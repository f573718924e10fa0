"""The ``colearn`` command line. Sub-commands come from the ``commands`` registry, so plugins
add their own (``colearn convert ...``) through ``register_commands``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import __version__
from .errors import ColearnError

__all__ = ["Command", "main"]


@dataclass(frozen=True)
class Command:
    """A sub-command: its one-line help, how it declares arguments, and what it runs."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None
    #: The ``nargs="*"`` positional (its dest) that also takes positionals given after options:
    #: argparse alone cannot intermix them (``colearn embed MODEL --modality text "a" "b"``).
    intermixed: str | None = None


#: What the groups of ``group/kind`` commands do, for their help (others get a generic line).
GROUP_HELP = {
    "convert": "convert another library's model into a colearn model folder",
}


def build_parser() -> argparse.ArgumentParser:
    """The CLI from the ``commands`` registry. A command named ``group/kind`` (registered by
    any plugin, e.g. ``convert/open_clip``) runs as ``colearn group kind ...``."""
    from .registry import registries

    parser = argparse.ArgumentParser(
        prog="colearn", description="colearn: multimodal co-learning with a model hub."
    )
    parser.add_argument("--version", action="version", version=f"colearn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    entries = list(registries.commands.items())
    kinds: dict[str, list[str]] = {}
    for name, _ in entries:
        group, _, kind = name.partition("/")
        if kind:
            kinds.setdefault(group, []).append(kind)
    groups: dict[str, Any] = {}
    for group, members in kinds.items():
        if group in registries.commands:
            owner = registries.commands.entry(group).plugin
            raise ColearnError(
                f"command {group!r} from plugin {owner!r} clashes with the command group "
                f"{group!r} ({', '.join(f'{group}/{k}' for k in members)}); rename one of them"
            )
        help_text = GROUP_HELP.get(group, f"{group} commands") + f" ({', '.join(members)})"
        gp = sub.add_parser(group, help=help_text, description=help_text)
        gp.set_defaults(_help=gp.print_help)
        groups[group] = gp.add_subparsers(dest="kind", metavar="KIND")
    for name, entry in entries:
        command: Command = entry.obj
        group, _, kind = name.partition("/")
        p = (groups[group] if kind else sub).add_parser(
            kind or name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(p)
        p.set_defaults(_run=command.run, _intermixed=command.intermixed)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``parser.parse_args`` that lets a command's :attr:`Command.intermixed` positional take
    positionals given after its options; anything else unrecognised is an error as usual."""
    args, extra = parser.parse_known_args(list(argv))
    dest = getattr(args, "_intermixed", None)
    if extra and (dest is None or any(e.startswith("-") and e != "-" for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        setattr(args, dest, [*getattr(args, dest), *extra])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``colearn`` console script and ``python -m colearn``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":  # answer without loading any plugin
        print(f"colearn {__version__}")
        return 0
    try:
        parser = build_parser()
    except ColearnError as exc:  # e.g. a plugin failing in strict mode
        print(f"colearn: error: {exc}", file=sys.stderr)
        return 1
    args = parse_args(parser, argv)
    if not getattr(args, "_run", None):
        getattr(args, "_help", parser.print_help)()
        return 2
    try:
        return int(args._run(args) or 0)
    except ColearnError as exc:
        print(f"colearn {args.command}: error: {exc}", file=sys.stderr)
        return 1


# --- built-in commands -------------------------------------------------------------------


def _plugins_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--traceback", action="store_true", help="show full tracebacks of failures")


def _plugins_run(args: argparse.Namespace) -> int:
    from .plugins import plugin_report

    report = plugin_report()
    if args.json:
        print(json.dumps([p.to_dict() for p in report], indent=2))
        return 0
    for p in report:
        head = f"{p.distribution or p.name} {p.version or ''}".rstrip()
        if p.ok:
            print(f"{head}  [{p.module}]")
            for kind, names in sorted(p.registered.items()):
                print(f"    {kind}: {', '.join(sorted(names))}")
        else:
            print(f"{head}  FAILED: {p.error}")
            if args.traceback and p.traceback:
                print("    " + p.traceback.replace("\n", "\n    "))
    failed = sum(not p.ok for p in report)
    print(f"\n{len(report) - failed} loaded, {failed} failed")
    return 0


PLUGINS_COMMAND = Command(
    help="list installed plugins, what each registered, and failures",
    add_arguments=_plugins_arguments,
    run=_plugins_run,
)
