"""The demo's model: small enough to train in a minute on a laptop, made the way a beamline's would be.

Used by ``xanes-agent demo``, ``predict`` without ``--models`` and the benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.library import load_bundled_library
from .model import BUNDLE_VERSION, BundleError, ElementModel, bundle_path
from .training import data_hash, live_config, train_element


def ensure_demo_model(models: Path, element: str, trees: int = 50, quiet: bool = False) -> Path:
    """The bundle the demo uses (``models/<El>-pointwise-post_edge.npz``): the live preset with
    ``trees`` trees per seed, trained once on the bundled library and reused while the library and
    the preset are unchanged.

    Parameters
    ----------
    models : Path
        Folder of the bundle (created if needed).
    element : str
        Absorber, e.g. ``"Cu"``.
    trees : int
        Trees per forest.
    quiet : bool
        Print nothing (and no progress bar) while training.

    Returns
    -------
    Path
        The bundle.
    """
    cfg = live_config(n_estimators=trees, n_jobs=-1)
    path = bundle_path(models, element, cfg.featurization, "post_edge")
    want = json.loads(json.dumps({k: v for k, v in cfg.as_dict().items() if k != "n_jobs"}))  # as a bundle stores it
    lib = load_bundled_library().where(element=element)
    # a quick model: every held-out row (never trained on) plus a seeded 1,500 of the training rows
    train = np.flatnonzero(lib.split != "test")
    keep = np.random.default_rng(0).choice(train, min(1500, len(train)), replace=False)
    lib = lib[np.sort(np.concatenate([keep, np.flatnonzero(lib.split == "test")]))]
    if path.exists():
        # reused only if made with this preset from these spectra (the bundled library grows), in
        # the current bundle format (an older one loads, but answers as its version did)
        try:
            have = ElementModel.load(path)
            if have.format_version == BUNDLE_VERSION and have.training_data_hash == data_hash(lib) and all(
                have.config.get(k) == v for k, v in want.items()
            ):
                return path
        except BundleError:
            pass  # unreadable: train it again
    if not quiet:
        print(f"training a {element} model once ({trees} trees x 10 seeds x {len(cfg.properties)} properties on "
              f"{len(keep)} spectra; full-size models: 'xanes-agent train') ...", flush=True)
    model = train_element(lib, element, cfg, progress=not quiet)
    return model.save(path)
