"""Where the agent's models come from: bundles in a folder, loaded on first use and validated."""

from __future__ import annotations

import logging
from pathlib import Path

from ..models.features import DEFAULT_FEATURIZATION
from ..models.model import INTERVAL_KINDS, BundleError, ElementModel
from .predictor import LivePredictor

log = logging.getLogger(__name__)


class ModelStore:
    """Element models loaded lazily from a folder of bundles (``<El>-<featurization>-<norm>.npz``).

    Where the folder holds an element's bundles of several normalizations, ``normalization`` picks
    one; without it the study's default (post-edge) is taken if present, and the choice is logged
    with the alternatives. A bundle that fails to load (corrupt, tampered, wrong version) is
    reported once and that element gets no predictions; the agent keeps running.

    Parameters
    ----------
    folder : str or Path, optional
        The bundles' folder.
    models : dict of str to ElementModel, optional
        Models already in memory (take precedence over the folder).
    featurization : str
        Preferred featurization where the folder holds several.
    engine : str
        The fast path's engine (``"auto"``, ``"numba"``, ``"numpy"``).
    normalization : str, optional
        Which bundles where the folder holds several normalizations per element.
    intervals : str
        ``"same-code"``: intervals for spectra computed as the training spectra were (the
        simulator); ``"across-codes"``: for another code or a measurement, where a bundle has that
        calibration (``xanes-agent train --calibrate-across``; a bundle without it keeps its
        same-code intervals, with a warning).
    """

    def __init__(self, folder: str | Path | None = None, models: dict[str, ElementModel] | None = None,
                 featurization: str = DEFAULT_FEATURIZATION, engine: str = "auto", normalization: str | None = None,
                 intervals: str = "same-code") -> None:
        if intervals not in INTERVAL_KINDS:
            raise ValueError(f"intervals {intervals!r}: one of {', '.join(INTERVAL_KINDS)}")
        self.intervals = intervals
        self.folder = Path(folder) if folder else None
        self.featurization = featurization
        self.normalization = normalization
        self.engine = engine
        self._models: dict[str, ElementModel] = dict(models or {})
        self._predictors: dict[str, LivePredictor] = {}
        self.errors: dict[str, str] = {}
        self.paths: dict[str, Path] = {}  # the bundle each element's model came from

    def _bundle(self, element: str) -> Path | None:
        cands = sorted(self.folder.glob(f"{element}-{self.featurization}-*.npz")) or sorted(
            self.folder.glob(f"{element}-*.npz"))
        if self.normalization is not None:
            cands = [c for c in cands if c.stem.endswith(f"-{self.normalization}")]
        if len(cands) > 1:
            default = [c for c in cands if c.stem.endswith("-post_edge")]
            chosen = (default or cands)[0]
            log.warning("%s: several bundles (%s): using %s (choose with normalization=...)", element,
                        ", ".join(c.name for c in cands), chosen.name)
            return chosen
        return cands[0] if cands else None

    def preload(self) -> list[str]:
        """Load (and compile the fast path of) every element's model now: a service's first run then
        gets predictions from its first readings instead of waiting seconds for the model. Returns
        the elements ready; a bundle that fails is reported as it would be on first use."""
        from ..foundation.edges import ELEMENTS

        names = set(self._models)
        if self.folder is not None:
            names |= {p.name.split("-")[0] for p in self.folder.glob("*-*.npz")}
        return [el for el in sorted(names) if el in ELEMENTS and self.predictor(el) is not None]

    def predictor(self, element: str) -> LivePredictor | None:
        if element in self._predictors:
            return self._predictors[element]
        if element in self.errors:
            return None
        model = self._models.get(element)
        if model is None and self.folder is not None:
            path = self._bundle(element)
            if path is not None:
                try:
                    model = ElementModel.load(path, expect_element=element)
                except BundleError as exc:
                    self.errors[element] = str(exc)
                    log.error("model for %s not usable: %s", element, exc)
                    return None
                self.paths[element] = path
        if model is None:
            self.errors[element] = f"no model for {element}"
            log.error("no model for %s (folder %s)", element, self.folder)
            return None
        model.intervals = self.intervals
        if self.intervals == "across-codes" and not model.across_codes_for():
            log.warning("model for %s has no across-codes calibration: its intervals hold for spectra computed as its "
                        "training spectra were, and are too narrow for measured ones", element)
        self._predictors[element] = LivePredictor(model, self.engine)
        return self._predictors[element]
