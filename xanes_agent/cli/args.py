"""Argument types and shared options of the ``xanes-agent`` subcommands (one place for all rooms)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..models.calibration import valid_domain_quantile
from ..models.neighbours import MAX_BLUR, valid_blur


class CLIError(Exception):
    """A bad argument or input: printed as one clear line, exit status 2."""


def existing_file(value: str) -> Path:
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


positive_int = _number(int, lambda n: n > 0, "a positive integer")
non_negative_int = _number(int, lambda n: n >= 0, "a whole number >= 0")
positive_float = _number(float, lambda x: 0 < x < float("inf"), "a positive finite number")
domain_quantile = _number(float, valid_domain_quantile, "a quantile in [0.5, 1)")
share = _number(float, lambda x: 0.0 <= x <= 1.0, "a share in [0, 1]")
vote_blur = _number(float, valid_blur, f"a blur of 0 to {MAX_BLUR:g} eV")


def element_arg(value: str) -> str:
    from ..foundation.edges import ELEMENTS

    v = value.capitalize()
    if v not in ELEMENTS:
        raise argparse.ArgumentTypeError(f"unknown absorber {value!r}; choose from {', '.join(ELEMENTS)}")
    return v


@contextlib.contextmanager
def cluster_client(address: str | None) -> Iterator[Any]:
    """The Dask client for ``--scheduler ADDRESS`` (None without one), closed afterwards."""
    if address is None:
        yield None
        return
    from ..cluster import ClusterError, connect, describe

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


def data_args(p: argparse.ArgumentParser) -> None:
    """--library / --data / --source: which spectra a command trains on, evaluates on or draws from."""
    p.add_argument("--library", type=existing_file, default=None, help="library .npz (default: bundled)")
    p.add_argument("--data", nargs="+", type=existing_file, default=None,
                   help="user spectra instead of a library (Materials Project JSON with labels, xmu.dat)")
    p.add_argument("--source", default=None, help="only this source (e.g. feff10-project, omnixas-feff9)")


def load_collection(a: argparse.Namespace, narrow: bool = True):
    """The spectra a command works on: ``--data`` files (MP JSON, xmu.dat) or a library (bundled
    default), only ``--source`` where given (a source the data lack is an error naming those it
    has); ``narrow=False``: every source (the caller narrows with :func:`only_source`)."""
    from ..data import SpectrumCollection, read_spectrum
    from ..data.library import load_bundled_library
    from ..data.readers import read_library

    if getattr(a, "data", None):
        coll = SpectrumCollection.from_spectra([read_spectrum(p) for p in a.data], source="user")
    elif getattr(a, "library", None):
        coll = read_library(a.library)
    else:
        coll = load_bundled_library()
    if not narrow or not getattr(a, "source", None):
        return coll
    return only_source(coll, a.source)


def only_source(coll, source: str, flag: str = "--source"):
    """The spectra of ``source``; a source the data lack is an error naming ``flag`` and the sources they have."""
    sub = coll.where(source=source)
    if not len(sub):
        have = ", ".join(sorted(set(coll.source.tolist())))
        raise CLIError(f"{flag} {source}: no such source in the data (have: {have})")
    return sub


def sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--element", type=element_arg, default="Cu")
    p.add_argument("--sample-id", default=None, help="library id of the sample")
    p.add_argument("--cn", type=int, choices=[4, 5, 6], default=None, help="random sample with this CN")
    p.add_argument("--split", default="test", help="library split to draw from (default: held-out test)")
    p.add_argument("--file", type=existing_file, default=None, help="xmu.dat / MP JSON / two-column file")
    p.add_argument("--library", type=existing_file, default=None)
    p.add_argument("--source", default=None)
    p.add_argument("--seed", type=int, default=0, help="sample choice and counting-noise seed")
    p.add_argument("--flux", type=positive_float, default=1e6, help="incident photons per second")
    p.add_argument("--dwell", type=positive_float, default=1.0, help="seconds per point")
    p.add_argument("--truth", action="store_true", help="put the sample's true labels in the start document")


def choose_sample(a: argparse.Namespace):
    """The sample for simulator commands: a file, a library id, or random by element and label."""
    from ..simulator import sample_from_file, sample_from_library

    if getattr(a, "file", None):
        return sample_from_file(a.file, element=a.element)
    lib = load_collection(a)
    labels = {"coordination_number": float(a.cn)} if getattr(a, "cn", None) else {}
    try:
        return sample_from_library(lib, sample_id=a.sample_id, element=a.element, split=a.split, rng=a.seed, **labels)
    except KeyError as exc:
        raise CLIError(str(exc.args[0])) from None
    except ValueError as exc:
        raise CLIError(str(exc)) from None
