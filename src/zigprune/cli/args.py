"""The argparse pieces the ``zigprune`` subcommands share: value types, and flags built from configs."""

from __future__ import annotations

import argparse
import shutil
import textwrap
from typing import TypeVar

from ..runs.options import GROUPS, default_of, flags

T = TypeVar("T")


def shape(text: str) -> tuple[int, ...]:
    """An argparse type: a shape such as ``3,32,32`` or ``3x32x32``."""
    try:
        return tuple(int(n) for n in text.lower().replace("x", ",").split(",") if n.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 3,32,32") from None


def wrap(text: str) -> str:
    """``text`` filled to the terminal's width (the compress help keeps its own line breaks)."""
    return textwrap.fill(text, width=max(40, min(100, shutil.get_terminal_size().columns - 2)))


def add_options(parser: argparse.ArgumentParser, *configs: type) -> None:
    """One flag per field of each of ``configs`` that declares one (``zigprune.runs.options``), in the
    argument groups the fields name; every flag defaults to None, so the handler passes on only what
    was given."""
    groups = {name: parser.add_argument_group(title) for name, title in GROUPS.items()}
    for item, flag in (pair for config in configs for pair in flags(config)):
        name = "--" + item.name.replace("_", "-")
        default = default_of(item)
        text = flag.help.format(default=default)
        group = groups[flag.group]
        if flag.kind == "on":
            group.add_argument(name, dest=item.name, action="store_const", const=True, help=text)
        elif flag.kind == "off":
            no = "--no-" + item.name.replace("_", "-")
            group.add_argument(no, dest=item.name, action="store_const", const=False, help=text)
        else:
            action = "append" if flag.kind == "append" else "store"
            options = {"type": flag.type, "choices": flag.choices} if flag.kind == "value" else {}
            group.add_argument(
                name, dest=item.name, action=action, metavar=flag.metavar, help=text, **options
            )


def add_where(parser: argparse.ArgumentParser, folder: str, default: str) -> None:
    """``--out DIR`` (a ``folder``, ``default`` when not given), ``--force`` and ``--no-progress``."""
    g = parser.add_argument_group("where")
    g.add_argument("--out", metavar="DIR", help=f"{folder} (default {default})")
    g.add_argument("--force", action="store_true", help=f"overwrite the {folder} already in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_of(args: argparse.Namespace, kind: type[T]) -> T:
    """The ``kind`` config from the flags the user gave (the rest keep the config's defaults)."""
    given = {f: getattr(args, f) for f in kind.__dataclass_fields__ if getattr(args, f, None) is not None}
    return kind(**given)


def add_trust(p: argparse.ArgumentParser) -> None:
    """--factory / --trust-factory: the only ways a run folder that names a factory gets it run."""
    p.add_argument("--factory", metavar="SPEC", help="build the model with this file.py:fn or module:fn")
    p.add_argument(
        "--trust-factory", action="store_true", help="run the factory the run folder names (trusted folders)"
    )
