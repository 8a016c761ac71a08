"""The ``xanes-agent`` command line.

Subcommands are grouped by room: data (``build-library``, ``library info``), models (``train``,
``evaluate``, ``report``, ``info``), simulator (``simulate``), agent (``serve``, ``replay``) and the
main job (``demo``: a simulated adaptive scan driven by the agent on bundled data).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

log = logging.getLogger("xanes_agent")


class CLIError(Exception):
    """A bad argument or input: printed as one clear line, exit status 2."""


def _existing_file(value: str) -> Path:
    p = Path(value)
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"file not found: {value}")
    return p


def _number(cast: Callable[[str], float], ok: Callable[[float], bool], what: str) -> Callable[[str], float]:
    """An argparse type: ``cast`` the text and require ``ok`` of it, else say what was expected."""

    def parse(value: str):
        try:
            x = cast(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
        if not ok(x):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return x

    return parse


_positive_int = _number(int, lambda n: n > 0, "a positive integer")
_non_negative_int = _number(int, lambda n: n >= 0, "a whole number >= 0")
_positive_float = _number(float, lambda x: 0 < x < float("inf"), "a positive finite number")


def _element(value: str) -> str:
    from .foundation.edges import ELEMENTS

    v = value.capitalize()
    if v not in ELEMENTS:
        raise argparse.ArgumentTypeError(f"unknown absorber {value!r}; choose from {', '.join(ELEMENTS)}")
    return v


# -- data ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def cluster_client(address: str | None) -> Iterator[Any]:
    """The Dask client for ``--scheduler ADDRESS`` (None without one), closed afterwards."""
    if address is None:
        yield None
        return
    from .cluster import ClusterError, connect, describe

    try:
        client = connect(address)
    except ClusterError as exc:
        raise CLIError(str(exc)) from exc
    try:
        print(describe(client), flush=True)
        yield client
    finally:
        client.close()


def scheduler_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the work as tasks on this Dask scheduler (e.g. tcp://10.0.0.5:8786; "
                        "pip install 'xanes-agent[cluster]'); default: local processes")


def cmd_build_library(a: argparse.Namespace) -> int:
    from .data.feff import PARAMETER_SETS
    from .data.library import build_library, bundled_library_path, table1

    if a.parameters not in PARAMETER_SETS:
        raise CLIError(f"unknown FEFF parameter set {a.parameters!r}; choose from {', '.join(PARAMETER_SETS)}")
    resume = None if a.no_resume else (a.resume_from or bundled_library_path())
    if resume is not None and not Path(resume).is_file():
        if a.resume_from:
            raise CLIError(f"--resume-from {a.resume_from}: no such library file")
        resume = None  # no bundled library (a trimmed install): compute everything
    with cluster_client(None if a.cached_only else a.scheduler) as client:
        lib = build_library(a.out, per_element=a.per_element, elements=a.elements, workers=a.workers,
                            cache_dir=a.cache, params=PARAMETER_SETS[a.parameters],
                            include_omnixas=not a.no_omnixas, time_budget=a.time_budget,
                            cached_only=a.cached_only, resume_from=resume, hosts_per_element=a.hosts_per_element,
                            client=client)
    print(table1(lib))
    print(f"wrote {a.out} ({Path(a.out).stat().st_size / 1e6:.1f} MB, {len(lib)} spectra, "
          f"{len(lib.meta['failures'])} calculations left out)")
    return 0


def cmd_library_info(a: argparse.Namespace) -> int:
    from .data.library import bundled_library_path, table1
    from .data.readers import read_library

    path = a.library or bundled_library_path()
    lib = read_library(path)
    print(f"library {path}  format v{lib.meta.get('format_version')}  created {lib.meta.get('created', '?')}")
    print(f"FEFF parameters: {lib.meta.get('feff_parameters', {}).get('name', '?')}; "
          f"left out: {len(lib.meta.get('failures', []))} calculations")
    print(table1(lib))
    return 0


# -- entry point ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from .foundation.edges import ELEMENTS

    p = argparse.ArgumentParser(prog="xanes-agent", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build-library", help="compute the FEFF10 reference library (resumable)")
    b.add_argument("--out", default="xanes_agent/data/reference/library.npz")
    b.add_argument("--per-element", type=_positive_int, default=300)
    b.add_argument("--hosts-per-element", type=_non_negative_int, default=0, metavar="N",
                   help="also N absorber sites per element in the real Materials Project host oxides of the "
                        "OmniXAS folder (native and isovalently substituted sites; see xanes_agent.data.hosts)")
    b.add_argument("--elements", nargs="+", type=_element, default=list(ELEMENTS))
    b.add_argument("--workers", type=_positive_int, default=2)
    b.add_argument("--cache", default=".cache", help="resumable FEFF and label cache folder")
    b.add_argument("--parameters", default="reduced-v1", help="FEFF parameter set name")
    b.add_argument("--no-omnixas", action="store_true", help="leave the OmniXAS Cu set out")
    b.add_argument("--time-budget", type=float, default=None, help="stop submitting after this many seconds")
    b.add_argument("--cached-only", action="store_true",
                   help="run no FEFF: write the library from what the cache holds (e.g. while a build runs)")
    b.add_argument("--resume-from", default=None, metavar="LIBRARY",
                   help="keep this earlier library's spectra of the same structures and parameters instead "
                        "of running FEFF again (default: the bundled library)")
    b.add_argument("--no-resume", action="store_true", help="compute every spectrum (or take it from --cache)")
    scheduler_arg(b)
    b.set_defaults(func=cmd_build_library)

    lib = sub.add_parser("library", help="inspect a reference library")
    lsub = lib.add_subparsers(dest="library_command", required=True, metavar="SUBCOMMAND")
    li = lsub.add_parser("info", help="counts per element and coordination class (Table 1 style)")
    li.add_argument("--library", type=_existing_file, default=None)
    li.set_defaults(func=cmd_library_info)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return p


#: Other rooms register their subcommands here (keeps this module free of heavy imports).
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    from . import commands  # noqa: F401 - registers the models/simulator/agent subcommands

    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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

