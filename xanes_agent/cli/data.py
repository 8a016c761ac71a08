"""Subcommands of the data room: ``build-library``, ``library info``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import CLIError, cluster_client, element_arg, existing_file, non_negative_int, positive_int, scheduler_arg


def cmd_build_library(a: argparse.Namespace) -> int:
    from ..data.feff import PARAMETER_SETS
    from ..data.library import build_library, bundled_library_path, table1

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
    from ..data.library import PROJECT_SOURCE, bundled_library_path, environments, parameter_sets, table1
    from ..data.readers import read_library

    path = a.library or bundled_library_path()
    lib = read_library(path)
    print(f"library {path}  format v{lib.meta.get('format_version')}  created {lib.meta.get('created', '?')}")
    print(f"FEFF parameters: {parameter_sets(lib)}; left out: {len(lib.meta.get('failures', []))} calculations")
    print(table1(lib))
    if a.environments:
        print(f"\n{PROJECT_SOURCE}: coordination classes by formal oxidation state")
        print(environments(lib))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..data.feff import LIBRARY_PARAMETERS
    from ..foundation.edges import ELEMENTS

    b = sub.add_parser("build-library", help="compute the FEFF10 reference library (resumable)")
    b.add_argument("--out", default="xanes_agent/data/reference/library.npz")
    b.add_argument("--per-element", type=positive_int, default=300)
    b.add_argument("--hosts-per-element", type=non_negative_int, default=0, metavar="N",
                   help="also N absorber sites per element in the real Materials Project host oxides of the "
                        "OmniXAS folder (native and isovalently substituted sites; see xanes_agent.data.hosts)")
    b.add_argument("--elements", nargs="+", type=element_arg, default=list(ELEMENTS))
    b.add_argument("--workers", type=positive_int, default=2)
    b.add_argument("--cache", default=".cache", help="resumable FEFF and label cache folder")
    b.add_argument("--parameters", default=LIBRARY_PARAMETERS.name,
                   help=f"FEFF parameter set name ({LIBRARY_PARAMETERS.name}: the library's, with the RPA-screened "
                        "core hole; the spectra an earlier library holds of other sets are kept as they are)")
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
    li.add_argument("--library", type=existing_file, default=None)
    li.add_argument("--environments", action="store_true",
                    help="also each coordination class's spectra and parents per formal oxidation state")
    li.set_defaults(func=cmd_library_info)
