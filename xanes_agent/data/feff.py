"""FEFF10 runs: input generation (Materials Project XANES conventions), execution, checks and a cache.

Inputs follow pymatgen's ``MPXANESSet`` (the Materials Project XANES parameters) with a documented
reduction of the expensive parts, chosen by measurement (see ``scripts/compare_feff_params.py`` and
``docs/library.md``). Each calculation is cached under the sha256 of its ``feff.inp`` text plus the FEFF10
version, so an interrupted library build continues where it stopped, and a calculation that fails
or gives an unphysical spectrum is recorded (with its reason) and left out, never silently kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FeffParameters:
    """FEFF10 settings for a K-edge XANES calculation (radii in Angstrom).

    ``scf_radius=None`` skips the self-consistent potential (much cheaper, but the Fermi level, and
    so the onset of the spectrum, is then only a non-SCF estimate).
    """

    name: str
    cluster_radius: float = 10.0
    fms_radius: float = 7.5
    scf_radius: float | None = 7.0
    scf_iterations: int = 30
    scf_mixing: float = 0.2  # FEFF's convergence-acceleration alpha (its default, and MP's)
    corehole: str = "FSR"
    xanes_kmax: float = 3.7  # Angstrom^-1 above the Fermi level: 3.7 -> ~52 eV, 4.5 -> ~77 eV
    ldos: bool = True
    # parameter sets whose spectra this one reproduces within the measured tolerance, so a library
    # build with this set keeps theirs rather than computing them again (see REDUCED_V2_PARAMETERS)
    spectra_as: tuple[str, ...] = ()
    # appended to a library site's id for its spectrum computed with this set, so that one library
    # holds a site's spectra of several sets (the FSR ones kept while the RPA ones grow)
    id_suffix: str = ""
    # the label FEFF's converged absorber charge transfer is recorded under: with the RPA core hole
    # the SCF runs without the core hole, so its charge is the ground state's, another quantity
    charge_label: str = "feff_charge_transfer"

    @property
    def spectra_of(self) -> tuple[str, ...]:
        """The parameter sets whose spectra a build with this set keeps: itself and ``spectra_as``."""
        return (self.name, *self.spectra_as)

    def tags(self) -> dict[str, Any]:
        tags: dict[str, Any] = {
            "FMS": [self.fms_radius, 0],
            "COREHOLE": self.corehole,
            "XANES": [self.xanes_kmax, 0.04, 0.1],
        }
        if self.scf_radius is not None:
            tags["SCF"] = [self.scf_radius, 0, self.scf_iterations, self.scf_mixing, 1]
        return tags


#: The Materials Project XANES set as pymatgen defines it (the yardstick; ~1-2 min per site here).
MP_PARAMETERS = FeffParameters(name="mp-xanes")

#: The project's library set: SCF over the first shell for 10 iterations (the Fermi level is then
#: within ~0.2 eV of its converged value; FEFF only prints the charge transfer once converged, so it
#: is mostly NaN here), FMS over ~2 shells, no LDOS, range to ~67 eV above the Fermi level so the
#: edge + 50 eV normalization point is inside. ~15 s per site here (NiO) against ~100 s for MP's set.
REDUCED_PARAMETERS = FeffParameters(
    name="reduced-v1", cluster_radius=7.0, fms_radius=4.5, scf_radius=3.0, scf_iterations=10,
    corehole="FSR", xanes_kmax=4.2, ldos=False,
)

#: The library set from 2026-11-28 on: ``reduced-v1`` with the SCF allowed 30 iterations, so it
#: converges and FEFF reports the absorber's charge transfer (``feff_charge_transfer``: electrons
#: within its Norman sphere from the self-consistent density, a computed, density-partitioned
#: charge; not a Bader charge). Measured (``scripts/scf_convergence_cost.py``, 8 library sites, one
#: per element): 10 iterations converged 0 of 8, 30 iterations 8 of 8 (FEFF stopped after 14-21) at
#: 1.20x the time (median; max 1.73x, on a loaded machine); the spectra equal ``reduced-v1``'s within
#: 0.008 of the edge step with each spectrum's own E0 (0.013 for one site whose max-derivative E0
#: moved 0.5 eV), so ``reduced-v1`` spectra are kept as they are (``spectra_as``) and only new sites
#: carry the computed charge.
REDUCED_V2_PARAMETERS = replace(REDUCED_PARAMETERS, name="reduced-v2", scf_iterations=30,
                                spectra_as=("reduced-v1",))

#: The cheapest set: no SCF (the energy reference and pre-edge onset then differ noticeably).
FAST_PARAMETERS = FeffParameters(
    name="fast-noscf", cluster_radius=6.0, fms_radius=4.5, scf_radius=None, corehole="FSR",
    xanes_kmax=4.2, ldos=False,
)

#: ``reduced-v2`` with the core hole screened in linear response (``COREHOLE RPA``) instead of the
#: final-state rule's full core hole: how the Materials Project / OmniXAS FEFF 9 spectra were
#: computed ("screened core-hole" in their headers). Measured (session 37): against the OmniXAS
#: spectra of the same 12 Cu sites (``scripts/compare_feff_params.py --n 12 --sets reduced-v2
#: --probe-corehole RPA``) median rms difference 0.083 -> 0.037 of the edge step on E0-5..E0+45 eV,
#: E0 offset -1.0 -> +0.3 eV, at 1.1x the time; on 108 native library Cu sites
#: (``scripts/corehole_transfer.py``) 0.085 -> 0.036, the white line 1.69 -> 1.53 (FEFF 9: 1.54);
#: Cu forests trained on 245 library sites computed both ways read the OmniXAS CN 0.58 -> 0.67
#: (balanced accuracy; 1,091 FSR sites: 0.63). FEFF's SCF then runs without the core hole, so the
#: absorber's charge transfer it reports is the ground state's (``feff_ground_charge_transfer``).
REDUCED_RPA_PARAMETERS = replace(REDUCED_V2_PARAMETERS, name="reduced-v2-rpa", corehole="RPA", spectra_as=(),
                                 id_suffix="@rpa", charge_label="feff_ground_charge_transfer")

PARAMETER_SETS = {p.name: p for p in (MP_PARAMETERS, REDUCED_PARAMETERS, REDUCED_V2_PARAMETERS, REDUCED_RPA_PARAMETERS,
                                      FAST_PARAMETERS)}
#: What ``build-library`` computes new sites with (session 37 on: the RPA core hole; the library
#: keeps the spectra of the sets before, :func:`~xanes_agent.data.library.build_library`).
LIBRARY_PARAMETERS = REDUCED_RPA_PARAMETERS

#: SCF mixing for a second try when FEFF's potential stage stops on "Found bad counts" (the SCF
#: occupation counting fails repeatedly and ``pot`` exits, or leaves no ``pot.bin`` for ``xsph``).
#: The FEFF developers' advice for exactly this (times-software/feff10#24) is a gentler
#: convergence acceleration than the default 0.2. Measured (``scripts/scf_mixing_effect.py``, 16
#: library sites that converged with 0.2, rerun with 0.05): correlation >= 0.9988 after aligning
#: within 0.6 eV, max deviation <= 0.06 of the edge step (0.20 for one site whose max-derivative E0
#: jumped between two features, which moves its normalization point), so a rescued spectrum is comparable.
FALLBACK_SCF_MIXING = 0.05

#: Cached failures recorded under an older policy are run again (policy 2 added the SCF fallback).
RETRY_POLICY = 2

#: How a run that failed outside FEFF (an exception of this package or of the machine, not a
#: ``feff10.FeffError``) is reported: never cached, so the next build runs it again.
INTERNAL_ERROR = "not FEFF's failure"

#: How feff10 reports a stage that something outside FEFF stopped: past its wall-clock limit (a
#: loaded machine: a niced build behind other work timed out in ``pot`` twice on 2026-12-01) or a
#: worker killed by a signal another process sends (stopping a build killed two ``pot`` stages,
#: recorded as crashes and so left out for good). Neither is FEFF's answer for the input: such a
#: run is reported as :data:`INTERNAL_ERROR`, not cached, and run again by the next build. (An
#: input that truly hangs would then cost one stage limit per build; none has been seen.)
_STOPPED_FROM_OUTSIDE = re.compile(r"timed out after|signal: (?:1|2|9|15) \(SIG(?:HUP|INT|KILL|TERM)\)")


def stopped_from_outside(message: str) -> bool:
    """Whether a FEFF failure ``message`` says the run was stopped from outside (a stage time
    limit, or SIGHUP/SIGINT/SIGKILL/SIGTERM) rather than by FEFF itself (a segfault stays FEFF's)."""
    return bool(_STOPPED_FROM_OUTSIDE.search(message))


def outcome_stands(record: dict[str, Any], spectrum_cached: bool = False) -> bool:
    """Whether a cached FEFF outcome (a ``result.json`` record) is final: a spectrum
    (``spectrum_cached``: its ``xmu.dat`` is kept, and today's checks judge it whatever the record
    says), an unphysical one, a rejected input, or FEFF's own crash (a ``Feff*Error``) under the
    current :data:`RETRY_POLICY`. Anything else is run again: an exception of this package or the
    machine before FEFF wrote a spectrum, which was cached as "FEFF failed" too before 2026-11-29
    (79 entries read "FEFF failed: ModuleNotFoundError", from a check that ran after FEFF while a
    module was being moved; their spectra were kept, and judged again when read), and a run a time
    limit or a signal stopped (:func:`stopped_from_outside`), cached as FEFF's crash before 2026-12-01."""
    reason = str(record.get("reason", ""))
    if spectrum_cached or not reason.startswith(("FEFF failed", INTERNAL_ERROR)):
        return True
    if stopped_from_outside(reason):  # recorded before 2026-12-01 as FEFF's crash
        return False
    policy = record.get("retry_policy", 1)  # read from a file: anything but an integer counts as none
    policy = policy if isinstance(policy, int) and not isinstance(policy, bool) else 1
    return reason.startswith("FEFF failed: Feff") and policy >= RETRY_POLICY


def next_attempt(reason: str, bad_counts: bool, fallback_tried: bool, retried: bool) -> str:
    """What follows a FEFF run that ended with ``reason``: ``"stop"`` (keep this outcome),
    ``"fallback"`` (once, for an SCF that stopped on "Found bad counts": the gentler mixing) or
    ``"retry"`` (once, as it was: a stage occasionally dies in pooled workers).

    A good, an unphysical or a rejected run is final, and so is a failed fallback: in the
    session-14 build the plain retry after one rescued none of 120 sites (2 of 56 after other
    crashes) and cost about 3 % of the build's FEFF time."""
    if not reason.startswith("FEFF failed"):
        return "stop"
    if bad_counts and not fallback_tried:
        return "fallback"
    return "stop" if retried or fallback_tried else "retry"


def with_scf(inp: str, *, iterations: int | None = None, mixing: float | None = None) -> str:
    """``inp`` with the SCF card's iteration limit (its 3rd number, FEFF's ``nscmt``) and/or its
    mixing (4th number, ``ca``) replaced; the other numbers are kept."""
    def repl(m: re.Match) -> str:
        parts = re.split(r"(\s+)", m.group(2))  # numbers at even positions, the spacing kept between
        if iterations is not None:
            parts[4] = str(int(iterations))
        if mixing is not None:
            parts[6] = f"{mixing:g}"
        return m.group(1) + "".join(parts)

    out, n = re.subn(r"(?m)^(\s*SCF\s+)(\S+\s+\S+\s+\S+\s+\S+(?:[ \t]+\S+)*)", repl, inp)
    if n != 1:
        raise ValueError("feff.inp has no SCF card with iterations and mixing")
    return out


def feff_input(structure: Any, absorber_index: int, params: FeffParameters, title: str = "") -> str:
    """The ``feff.inp`` text for a K-edge XANES run on site ``absorber_index`` of ``structure``."""
    from pymatgen.io.feff.sets import MPXANESSet

    feff_set = MPXANESSet(
        absorber_index, structure, edge="K", radius=params.cluster_radius, user_tag_settings=params.tags()
    )
    if params.scf_radius is None:
        feff_set.config_dict.pop("SCF", None)
    if not params.ldos:
        feff_set.config_dict.pop("LDOS", None)
    header = str(feff_set.header())
    if title:
        header = f"TITLE {title}\n" + header
    return "\n\n".join([header, str(feff_set.tags), str(feff_set.potential), str(feff_set.atoms)]) + "\n"


@dataclass
class FeffResult:
    """Outcome of one FEFF calculation. ``ok`` is False with a ``reason`` when it was left out."""

    key: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0
    energy: np.ndarray | None = None
    mu: np.ndarray | None = None
    charge_transfer: float = float("nan")
    meta: dict[str, Any] = field(default_factory=dict)
    scf_mixing_fallback: float | None = None  # the SCF mixing of a second try that gave this result
    retry_policy: int = 1  # the RETRY_POLICY it was computed under (1: recorded before policies)


def input_key(inp: str) -> str:
    import feff10

    return hashlib.sha256((inp + "\n#feff10-rs " + feff10.__version__).encode()).hexdigest()[:20]


def check_spectrum(energy: np.ndarray, mu: np.ndarray) -> str:
    """Return why a computed spectrum is unphysical, or ``""`` if it passes.

    Checks: at least 20 finite points; no negative absorption (below -1 % of the post-edge level,
    the mean of the top quarter of the range); an edge (the post-edge level at least twice the
    first-decile mean); no anomalous pre-edge peak: nothing more than 5 eV below E0 (the point of
    steepest rise) above 90 % of the post-edge level *and* falling back below half of it before E0.
    A peak that falls back is an artefact; a high first step that does not is a two-step edge whose
    steepest rise is the second step (FEFF gives those for whole families, e.g. layered LiCrO2).
    """
    if len(energy) < 20:
        return f"too few points ({len(energy)})"
    if not (np.all(np.isfinite(energy)) and np.all(np.isfinite(mu))):
        return "non-finite values in the spectrum"
    n = len(mu)
    post = float(np.mean(mu[-n // 4:]))
    if post <= 0:
        return f"non-positive post-edge absorption ({post:.3g})"
    if mu.min() < -0.01 * post:
        return f"negative absorption (min {mu.min():.3g})"
    if np.mean(mu[: max(2, n // 10)]) * 2 > post:
        return "no absorption edge (post-edge level below twice the pre-edge level)"
    from ..foundation.normalization import steepest_rise

    # the plain maximum derivative: this acceptance rule was set (and the library judged) with it
    e0 = steepest_rise(energy, mu, main_rise=False)
    before = energy < e0
    lowest_after = np.minimum.accumulate(mu[before][::-1])[::-1]  # from each point up to E0
    peak = (energy[before] < e0 - 5.0) & (mu[before] > 0.9 * post) & (lowest_after < 0.5 * post)
    if peak.any():
        top = float(mu[before][peak].max())
        return f"anomalous pre-edge peak ({top:.3g} at >5 eV below E0, then below half the post-edge {post:.3g})"
    return ""


def _absorber_charge_transfer(work: Path) -> float:
    log = work / "log1.dat"
    if not log.exists():
        return float("nan")
    m = re.search(r"Charge transfer:\s*type\s*charge\s*\n\s*0\s+(-?[\d.]+)", log.read_text(errors="replace"))
    return float(m.group(1)) if m else float("nan")


def run_feff(
    inp: str, cache_dir: str | Path, meta: dict[str, Any] | None = None, stage_timeout: float = 900.0
) -> FeffResult:
    """Run FEFF10 on ``inp`` (or return the cached result), validating the spectrum.

    A run whose SCF stops on "Found bad counts" is tried again with the SCF mixing set to
    :data:`FALLBACK_SCF_MIXING` (recorded as ``scf_mixing_fallback``); any other crash once more as
    it was; a failed fallback is final (:func:`next_attempt`). The cache entry ``<cache_dir>/<key>/``
    keeps ``feff.inp`` (and ``feff_fallback.inp``), ``xmu.dat`` and ``result.json``; FEFF's scratch
    files are deleted. A cached outcome that does not stand (:func:`outcome_stands`: a crash under
    an older :data:`RETRY_POLICY`, an error outside FEFF) is run again; an error outside FEFF is
    returned (``ok`` False, its reason starting with :data:`INTERNAL_ERROR`) but not cached.
    """
    key = input_key(inp)
    entry = Path(cache_dir) / key
    result_file = entry / "result.json"
    if result_file.exists():
        record = json.loads(result_file.read_text())
        if outcome_stands(record, (entry / "xmu.dat").exists()):
            return _load_cached(entry, key, record)
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "feff.inp").write_text(inp)
    t0 = time.perf_counter()
    text, mixing, runs, retried = inp, None, 0, False
    while True:
        runs += 1
        energy, mu, charge, reason, bad_counts = _run_once(text, entry, stage_timeout)
        step = next_attempt(reason, bad_counts, mixing is not None, retried)
        if step == "stop":
            break
        if step == "fallback":
            mixing = FALLBACK_SCF_MIXING
            text = with_scf(inp, mixing=mixing)
            (entry / "feff_fallback.inp").write_text(text)
        else:
            retried = True
    seconds = time.perf_counter() - t0
    record = {"ok": not reason, "reason": reason, "seconds": seconds, "charge_transfer": charge,
              "attempts": runs, "scf_mixing_fallback": mixing, "retry_policy": RETRY_POLICY, "meta": meta or {}}
    if reason.startswith(INTERNAL_ERROR):  # an error of this package or the machine: not FEFF's answer
        result_file.unlink(missing_ok=True)
    else:
        result_file.write_text(json.dumps(record, indent=1, sort_keys=True))
    return FeffResult(key=key, ok=not reason, reason=reason, seconds=seconds, energy=energy, mu=mu,
                      charge_transfer=charge, meta=meta or {}, scf_mixing_fallback=mixing,
                      retry_policy=RETRY_POLICY)


def _run_once(
    inp: str, entry: Path, stage_timeout: float
) -> tuple[np.ndarray | None, np.ndarray | None, float, str, bool]:
    """One FEFF10 pipeline run in a scratch folder: (energy, mu, charge, reason, bad_counts).

    ``reason`` is ``""`` for a good spectrum (``xmu.dat`` copied into ``entry``); ``bad_counts``
    says the SCF stopped on FEFF's "Found bad counts" (see :data:`FALLBACK_SCF_MIXING`).
    """
    import feff10

    with (tempfile.TemporaryDirectory(prefix="feff-") as tmp, _quiet_output(Path(tmp) / "stdout.log"),
          _stage_environment(STAGE_MALLOC_ENV)):
        work = Path(tmp)
        try:
            finput = feff10.FeffInput.parse(inp)
            config = feff10.FeffConfig(str(work), finput, stage_timeout=stage_timeout)
            result = feff10.FeffPipeline(config).run()
            table = result.read_xmu()
            cols = np.asarray(table.columns, dtype=float)
            energy, mu = cols[0], cols[3]
            shutil.copy(work / "xmu.dat", entry / "xmu.dat")
            return energy, mu, _absorber_charge_transfer(work), check_spectrum(energy, mu), False
        except feff10.FeffParseError as exc:  # the input itself is wrong: retrying cannot help
            return None, None, float("nan"), f"FEFF rejected the input: {exc}"[:500], False
        except feff10.FeffError as exc:  # FEFF's own failure: recorded, never raised into a build
            if stopped_from_outside(str(exc)):  # ... unless a time limit or a signal stopped it
                return None, None, float("nan"), f"{INTERNAL_ERROR}: stopped from outside FEFF: {exc}"[:500], False
            log = work / "log1.dat"
            text = log.read_text(errors="replace").lower() if log.exists() else ""
            bad = "bad counts" in text or "reduce ca1" in text  # FEFF's own advice: lower the mixing
            return None, None, float("nan"), f"FEFF failed: {type(exc).__name__}: {exc}"[:500], bad
        except Exception as exc:  # noqa: BLE001 - this package's or the machine's: reported, not kept
            return None, None, float("nan"), f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}"[:500], False


def cached_record(cache_dir: str | Path, key: str) -> dict[str, Any] | None:
    """The ``result.json`` record of cache entry ``key``, or None if there is none (or it is being
    written)."""
    try:
        return json.loads((Path(cache_dir) / key / "result.json").read_text())
    except (OSError, ValueError):
        return None


def cached_result(inp: str, cache_dir: str | Path) -> FeffResult | None:
    """The cached result for ``inp``, or None if it has not been computed yet."""
    key = input_key(inp)
    entry = Path(cache_dir) / key
    return _load_cached(entry, key) if (entry / "result.json").exists() else None


#: glibc malloc settings for FEFF's stage processes (they inherit this process's environment).
#: FEFF frees and re-allocates ~20 MB work arrays in its inner loops; with glibc's defaults each free
#: handed the pages back to the kernel (madvise) and each allocation faulted them in again, so about
#: 60 % of a run was kernel time. Keeping 256 MB of padding at the top of the heap stops that: the
#: same spectra bit for bit, ~2x faster (``benchmarks/feff_malloc.py``: 1.97x over 4 structures).
#: A value the user set wins.
STAGE_MALLOC_ENV = {"MALLOC_TOP_PAD_": str(256 * 2**20)}


@contextlib.contextmanager
def _stage_environment(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` (where not already set) for processes started inside the block, then restore."""
    added = {k: v for k, v in env.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


@contextlib.contextmanager
def _quiet_output(log: Path) -> Iterator[None]:
    """Send FEFF's chatter to a log file: native code and its stage processes print on file
    descriptors 1 and 2 (progress, and Fortran runtime errors after a crash, which the failure
    reason already names), which would otherwise flood a build's progress bar."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(log, "wb") as fh:
        for fd in saved:
            os.dup2(fh.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, keep in saved.items():
                os.dup2(keep, fd)
                os.close(keep)


def _load_cached(entry: Path, key: str, record: dict[str, Any] | None = None) -> FeffResult:
    if record is None:
        record = json.loads((entry / "result.json").read_text())
    energy = mu = None
    reason = record["reason"]
    if (entry / "xmu.dat").exists():
        cols = np.loadtxt(entry / "xmu.dat", comments="#")
        energy, mu = cols[:, 0], cols[:, 3]
        # judged again with today's checks, so a cache keeps up with them in both directions
        reason = check_spectrum(energy, mu)
    return FeffResult(key=key, ok=not reason, reason=reason, seconds=record["seconds"],
                      energy=energy, mu=mu, charge_transfer=record.get("charge_transfer", float("nan")),
                      meta=record.get("meta", {}), scf_mixing_fallback=record.get("scf_mixing_fallback"),
                      retry_policy=record.get("retry_policy", 1))


def params_dict(params: FeffParameters) -> dict[str, Any]:
    return asdict(params)
