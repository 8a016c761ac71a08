"""The ``xanes-agent`` command line: parser and entry point; each room's subcommands in their module.

Subcommands are grouped by room: data (``build-library``, ``library info``), models (``train``,
``evaluate``, ``report``, ``info``), simulator (``simulate``), agent (``serve``, ``replay``) and the
main job (``demo``: a simulated adaptive scan driven by the agent on bundled data).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import agent, data, models, simulator
from .args import CLIError

log = logging.getLogger("xanes_agent")

#: Every room's subcommands, registered in this order (``xanes-agent --help`` lists them so).
ROOMS = (data, models, simulator, agent)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xanes-agent", description="Interpretable random-forest models for XANES, "
                                "in the beamline loop: train, predict, and drive adaptive scans.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for room in ROOMS:
        room.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(a.func(a) or 0)
    except CLIError as exc:
        print(f"xanes-agent {a.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"xanes-agent {a.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xanes-agent {a.command}: interrupted", file=sys.stderr)
        return 130
