"""The trained model of one absorbing element and its pickle-free bundle file.

A bundle (``.npz``) holds every property, every seed (as packed forests), the grid, normalization,
featurization, feature names and energy ranges, importances, training metrics, a hash of the
training data and the library versions, plus a manifest with the sha256 of every array. Loading
refuses, with a message that says why: a file that is not a bundle, an unknown format version, an
array whose hash does not match the manifest (tampered or corrupt), or a bundle made for a
different grid or featurization than the caller expects. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.jsonsafe import json_default
from ..foundation.properties import decides
from .calibration import (
    Calibration,
    DomainModel,
    apply_confidence_map,
    check_band_limits,
    check_knots,
    check_quantiles,
    check_scale_bins,
    check_spread_floors,
)
from .features import FEATURIZATIONS, Grid, make_featurizer
from .neighbours import NeighbourVote
from .packed import PackedForests, tree_std

INTERVAL_KINDS = ("same-code", "across-codes")
BUNDLE_FORMAT = "xanes-agent-model"
# 2: out-of-group calibration (intervals, CN confidence map, domain model); 3: E0 at the half-step
# crossing of the main rise, not its steepest point (a version-2 model's grid sits ~2.5 eV higher on
# the same spectrum, so it is refused rather than fed spectra placed another way: retrain); 4: the
# CN probability blends the forests with a nearest-neighbour vote (``vote__*`` arrays; a version-3
# bundle is read as before, without one; an older reader must refuse a version 4, not ignore the vote);
# 5: each parent structure votes once (``vote__parents``; a version-4 vote is read as it was trained,
# every spectrum a voter; an older reader must refuse a version 5, not count copies as voters);
# 6: the vote compares spectra blurred by ``blur_fwhm`` eV (a version-5 vote compares them as they
# are, as trained; an older reader must refuse a version 6, not compare unblurred spectra)
# 7: the domain flag's second test, the distance forest's trees' spread against per-coverage-band
# limits (``domain_spread_limits``; a version-6 bundle flags by the distance alone, as trained; an
# older reader must refuse a version 7, not flag fewer spectra than the model was calibrated to)
# 8: the distance test's score limit per coverage band (``domain_far_limits``; a version-7 bundle
# flags at ``domain_threshold`` in every band, as trained; an older reader must refuse a version 8,
# not flag half of a model's in-family partial spectra)
# 9: the domain score on features of its own (``domain_featurization``, the polynomial ones while the
# models train on grid values; a version-8 bundle scores the model's own features, as calibrated;
# an older reader must refuse a version 9, not score features the limits were not set on)
# 10: E0 is the half-step crossing of the normalization about E0 itself, not about the steepest point
# (foundation.normalization.find_e0); it moves a library spectrum's E0 by a median 0.07-0.12 eV per
# element, more than 0.3 eV for 14-21 %: within the 0.5 eV E0 jitter the live preset trains with, so
# a version 3-9 bundle is still read (with the new E0), while a demo model of an older version is
# trained again
# 11: the domain flag reads its two tests together (``domain_alone_limits``, ``domain_joint_limits``:
# DomainModel.flags), and ``domain_spread_limits`` is the spread's in-family quantile, no longer
# raised to share the allowance; a version 3-10 bundle flags as it was calibrated, each test alone;
# an older reader must refuse a version 11, not flag by the spread's unraised limit alone
# (and the intervals scale with each property's trees' spread: ``interval_spread_floors``; a version
# 3-10 bundle scales them with the domain score alone, as calibrated)
# 12: the intervals are fitted on each side of the domain flag: a spectrum in the domain gets the
# interval for a new parent structure (``quantiles_in_domain``), a flagged one the larger of that and
# the one for a new structure type, both from the flagged calibration spectra (``quantiles``); a version
# 3-11 bundle gives every spectrum ``quantiles``, as calibrated (an older reader would do the same
# with a version 12: wider intervals than calibrated in the domain, never narrower)
# 13: in the domain, the quantiles per bin of the interval scale (``quantiles_in_domain_by_scale``:
# calibration.scale_bin_quantiles); a version 3-12 bundle gives every in-domain spectrum one table, as
# calibrated; an older reader must refuse a version 13, not give the spectra of the largest scale the
# narrower intervals of one table
BUNDLE_VERSION = 13
READABLE_VERSIONS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)


def bundle_path(folder: str | Path, element: str, featurization: str, normalization: str) -> Path:
    """Where a bundle lives in a model folder: ``<folder>/<El>-<featurization>-<normalization>.npz``
    (what ``train`` writes and :class:`~xanes_agent.agent.store.ModelStore` looks for)."""
    return Path(folder) / f"{element}-{featurization}-{normalization}.npz"


class BundleError(ValueError):
    """A model bundle that cannot be trusted or used; the message names the file and the reason."""


@dataclass
class PropertyModel:
    name: str  # "coordination_number", "mean_nn_distance" or "charge"
    label: str  # the data label it predicts (e.g. "oxidation_state" for "charge")
    kind: str  # "classifier" or "regressor"
    packed: PackedForests
    importances: np.ndarray
    importances_std: np.ndarray
    metrics: dict[str, Any] = field(default_factory=dict)
    n_train: int = 0
    n_test: int = 0


@dataclass
class ElementModel:
    element: str
    edge: str
    grid: Grid
    normalization: str
    featurization: str
    feature_names: np.ndarray
    energy_ranges: np.ndarray  # (n_features, 2), eV relative to E0
    properties: dict[str, PropertyModel]
    config: dict[str, Any] = field(default_factory=dict)
    training_data_hash: str = ""
    n_spectra: int = 0
    sources: list[str] = field(default_factory=list)
    coverage_curve: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    calibration: Calibration | None = None
    # which intervals predictions carry: "same-code" (spectra computed as the training spectra were)
    # or "across-codes" (another code or a measurement; where the bundle has that calibration)
    intervals: str = "same-code"
    # the nearest-neighbour CN vote blended into the forests' probability (None: the forests alone)
    vote: NeighbourVote | None = None
    # the bundle format it was read from (a new model: the current one)
    format_version: int = BUNDLE_VERSION

    def __post_init__(self) -> None:
        self._featurizer = make_featurizer(self.featurization, self.grid)
        self._domain_featurizer = None  # made on first use (domain_features)
        if self.intervals not in INTERVAL_KINDS:
            raise ValueError(f"intervals {self.intervals!r}: one of {', '.join(INTERVAL_KINDS)}")

    def across_codes_for(self) -> list[str]:
        """Properties whose intervals have an across-codes calibration in this bundle."""
        return sorted(self.calibration.across_codes) if self.calibration is not None else []

    def featurize(self, X_grid: np.ndarray) -> np.ndarray:
        """Features of spectra already normalized and on the grid (NaN where not covered)."""
        return self._featurizer.transform(np.atleast_2d(X_grid))

    def domain_features(self, X_grid: np.ndarray, F: np.ndarray | None = None) -> np.ndarray:
        """The features the domain score is taken on (:data:`~.calibration.DOMAIN_FEATURIZATION`
        where the calibration names one, else the model's own, ``F`` if given)."""
        dom = None if self.calibration is None or self.calibration.domain is None else self.calibration.domain
        name = None if dom is None else dom.featurization
        if name is None or name == self.featurization:
            return self.featurize(X_grid) if F is None else F
        if self._domain_featurizer is None:
            self._domain_featurizer = make_featurizer(name, self.grid)
        return self._domain_featurizer.transform(np.atleast_2d(X_grid))

    def predict_grid(self, X_grid: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Per-property predictions for grid spectra (see :func:`summarize` and :meth:`calibrate`)."""
        X_grid = np.atleast_2d(X_grid)
        F = self.featurize(X_grid)
        raw = {name: summarize(pm, *pm.packed.per_forest(F, second=True)) for name, pm in self.properties.items()}
        return self.calibrate(raw, F, X_grid)

    def calibrate(self, preds: dict[str, dict[str, np.ndarray]], F: np.ndarray, X_grid: np.ndarray
                  ) -> dict[str, dict[str, np.ndarray]]:
        """Replace the seed-spread uncertainty by the calibrated one (:mod:`.calibration`).

        ``F``: the features of the grid spectra ``X_grid`` (NaN where not measured). First, where
        the bundle has a neighbour vote (:mod:`.neighbours`), the classifier's ``proba``,
        ``prediction`` and ``probability`` become those of the forests blended with it
        (``forest_proba`` keeps the forests' own).

        Classifier: ``proba``/``probability`` through the isotonic confidence map (``raw_proba``
        kept; the predicted class is unchanged; with ``intervals="across-codes"`` the map
        calibrated on another code's spectra, where the bundle has one, which ``across_codes``
        says). Regressor:
        ``std`` becomes the half-width of the calibrated 68 % interval, ``interval68`` and
        ``interval90`` (rows, 2) are added, ``seed_std`` keeps the seed spread; with
        ``intervals="across-codes"`` they are the across-codes ones where the bundle has them
        (``across_codes`` says, per row, whether they were). Every property
        gets ``domain_score`` and ``in_domain``, False where :meth:`.DomainModel.flags` flags the
        spectrum from its distance to the training spectra for its coverage and, where the bundle
        has spread limits, the distance forest's trees' spread (the regressor's ``tree_std``,
        :func:`summarize`); ``domain_far`` and ``domain_trees_disagree`` say which test is beyond
        its own limit. A model without calibration keeps the seed
        spread and says so (``calibrated`` False).
        """
        X_grid = np.atleast_2d(X_grid)
        coverage = np.isfinite(X_grid).mean(axis=1)
        if self.vote is not None:
            for p in preds.values():
                if "proba" in p:
                    blended = self.vote.blend(p["proba"], X_grid)
                    k = np.argmax(blended, axis=1)
                    p.update(forest_proba=p["proba"], proba=blended, prediction=np.asarray(p["classes"])[k],
                             probability=blended[np.arange(len(k)), k])
        cal = self.calibration
        if cal is None or cal.domain is None:
            for p in preds.values():
                p["calibrated"] = np.zeros(len(F), bool)
            return preds
        score = cal.domain.score(self.domain_features(X_grid, F))
        # far: the distance test against its own limit, also the CN maps' strata
        flagged, far, disagree = cal.domain.flags(score, preds.get(cal.domain.spread_property, {}).get("tree_std"),
                                                  coverage)
        for name, p in preds.items():
            p.update(domain_score=score, in_domain=~flagged, calibrated=np.ones(len(F), bool),
                     domain_far=far, domain_trees_disagree=disagree)
            if "proba" in p:  # the predicted class stays the (blended) argmax; its probability is calibrated
                across = self.intervals == "across-codes" and cal.confidence_knots_across is not None
                if across:  # another code or a measurement: the map calibrated on another code's spectra
                    proba = apply_confidence_map(p["proba"], *cal.confidence_knots_across)
                else:
                    proba = apply_confidence_map(p["proba"], *cal.confidence_knots)
                    if cal.confidence_knots_far is not None and far.any():
                        proba[far] = apply_confidence_map(p["proba"][far], *cal.confidence_knots_far)
                k = np.argmax(p["proba"], axis=1)
                p.update(raw_proba=p["proba"], proba=proba, probability=proba[np.arange(len(k)), k],
                         across_codes=np.full(len(F), across))
            elif name in cal.quantiles:
                across = self.intervals == "across-codes" and name in cal.across_codes
                hw = cal.halfwidths(name, score, coverage, across_codes=across, spread=p.get("tree_std"),
                                    in_domain=~flagged)
                pred = p["prediction"]
                p.update(seed_std=p["std"], std=hw[:, 0], across_codes=np.full(len(F), across),
                         interval68=np.stack([pred - hw[:, 0], pred + hw[:, 0]], axis=1),
                         interval90=np.stack([pred - hw[:, 1], pred + hw[:, 1]], axis=1))
        return preds

    def importance_map(self, energies: np.ndarray, prop: str | None = None) -> np.ndarray:
        """Feature importance spread uniformly over each feature's energy range (eV rel. E0).

        Summed over the properties that decide a scan (each normalized to 1;
        :attr:`~xanes_agent.foundation.properties.Property.decides`) unless ``prop`` names one.
        Returns the importance density at ``energies`` (per eV).
        """
        energies = np.asarray(energies, float)
        deciding = [pm for n, pm in self.properties.items() if decides(n)]
        props = [self.properties[prop]] if prop else (deciding or list(self.properties.values()))
        out = np.zeros_like(energies)
        for pm in props:
            imp = pm.importances / max(pm.importances.sum(), 1e-12)
            lo, hi = self.energy_ranges[:, 0], self.energy_ranges[:, 1]
            width = np.maximum(hi - lo, 1e-9)
            inside = (energies[None, :] >= lo[:, None]) & (energies[None, :] <= hi[:, None])
            out += (imp[:, None] / width[:, None] * inside).sum(axis=0)
        return out / len(props)

    # -- bundle I/O -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "feature_names": self.feature_names.astype(str), "energy_ranges": np.asarray(self.energy_ranges, float)}
        props_meta = {}
        if self.calibration is not None and self.calibration.domain is not None:
            arrays.update(self.calibration.domain.to_arrays())
        if self.vote is not None:
            arrays.update(self.vote.to_arrays())
        for name, pm in self.properties.items():
            arrays.update(pm.packed.to_arrays(f"{name}__"))
            arrays[f"{name}__importances"] = pm.importances
            arrays[f"{name}__importances_std"] = pm.importances_std
            props_meta[name] = {"label": pm.label, "kind": pm.kind, "metrics": pm.metrics,
                                "n_train": pm.n_train, "n_test": pm.n_test}
        manifest = {
            "format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "element": self.element, "edge": self.edge,
            "grid": self.grid.as_dict(), "normalization": self.normalization, "featurization": self.featurization,
            "properties": props_meta, "config": self.config, "training_data_hash": self.training_data_hash,
            "n_spectra": self.n_spectra, "sources": self.sources, "coverage_curve": self.coverage_curve,
            "versions": _versions(), "sha256": {k: _digest(v) for k, v in arrays.items()},
            "calibration": self.calibration.meta() if self.calibration is not None else None,
            "neighbour_vote": self.vote.meta() if self.vote is not None else None,
        }
        manifest = json.loads(json.dumps(manifest, default=json_default))  # plain JSON types, as a reader sees it
        manifest["digest"] = _bundle_digest(manifest)
        arrays["manifest"] = np.array(json.dumps(manifest, sort_keys=True))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, expect_grid: Grid | None = None, expect_featurization: str | None = None,
             expect_element: str | None = None) -> ElementModel:
        path = Path(path)
        if not path.is_file():
            raise BundleError(f"{path}: model bundle not found")
        try:
            return cls._load(path, expect_grid, expect_featurization, expect_element)
        except BundleError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a hostile file provokes is a refusal, named
            raise BundleError(f"{path}: malformed bundle ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _load(cls, path: Path, expect_grid: Grid | None, expect_featurization: str | None,
              expect_element: str | None) -> ElementModel:
        _check_archive(path)
        try:
            z = np.load(path, allow_pickle=False)
            arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001 - zip/npz errors of every kind: say which file
            raise BundleError(f"{path}: not a readable model bundle ({type(exc).__name__}: {exc})") from None
        if "manifest" not in arrays:
            raise BundleError(f"{path}: no manifest: not an xanes-agent model bundle")
        try:
            manifest = json.loads(str(arrays.pop("manifest")))
        except json.JSONDecodeError as exc:
            raise BundleError(f"{path}: manifest is not valid JSON ({exc.msg})") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{path}: manifest is not a JSON object")
        if manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{path}: format {manifest.get('format')!r} is not {BUNDLE_FORMAT!r}")
        if manifest.get("format_version") not in READABLE_VERSIONS:
            raise BundleError(f"{path}: bundle format version {manifest.get('format_version')} is not supported "
                              f"(this xanes-agent reads versions {READABLE_VERSIONS}); retrain or upgrade")
        expected = manifest.get("sha256", {})
        if not isinstance(expected, dict) or set(expected) != set(arrays):
            raise BundleError(f"{path}: arrays {sorted(set(arrays) ^ set(expected))} do not match the manifest")
        if manifest.get("digest") != _bundle_digest(manifest):
            raise BundleError(f"{path}: the manifest does not match its digest (fields edited or corrupted); "
                              "refusing to load")
        for k, v in arrays.items():
            if _digest(v) != expected[k]:
                raise BundleError(f"{path}: array {k!r} does not match its sha256 in the manifest "
                                  "(file corrupted or modified); refusing to load")
        grid = Grid(**manifest["grid"])
        if expect_grid is not None and grid != expect_grid:
            raise BundleError(f"{path}: bundle was made for grid {grid} but {expect_grid} is expected")
        if expect_featurization is not None and manifest["featurization"] != expect_featurization:
            raise BundleError(f"{path}: bundle uses {manifest['featurization']!r} features, "
                              f"{expect_featurization!r} expected")
        if expect_element is not None and manifest["element"] != expect_element:
            raise BundleError(f"{path}: bundle is for {manifest['element']}, not {expect_element}")
        n_features = len(make_featurizer(manifest["featurization"], grid).fit().feature_names_)
        if arrays["feature_names"].shape != (n_features,) or arrays["energy_ranges"].shape != (n_features, 2):
            raise BundleError(f"{path}: {manifest['featurization']} features on this grid are {n_features}, "
                              f"the bundle names {arrays['feature_names'].shape}")
        props = {}
        for name, meta in manifest["properties"].items():
            packed = PackedForests.from_arrays(arrays, f"{name}__")
            try:  # before any compiled walk touches the node table
                packed.validate(n_features)
            except ValueError as exc:
                raise BundleError(f"{path}: {name} forests are not valid trees: {exc}") from None
            if (meta["kind"] == "classifier") != (packed.classes is not None):
                raise BundleError(f"{path}: {name} is a {meta['kind']} but its class list says otherwise")
            props[name] = PropertyModel(
                name=name, label=meta["label"], kind=meta["kind"], packed=packed,
                importances=arrays[f"{name}__importances"], importances_std=arrays[f"{name}__importances_std"],
                metrics=meta["metrics"], n_train=meta["n_train"], n_test=meta["n_test"])
        vote = None
        if manifest.get("neighbour_vote") is not None:
            cn = next((pm for pm in props.values() if pm.kind == "classifier"), None)
            try:  # before any distance is computed with it
                if cn is None:
                    raise ValueError("a neighbour vote without a CN classifier")
                vote = NeighbourVote.from_bundle(arrays, manifest["neighbour_vote"], grid, cn.packed.classes)
            except (KeyError, TypeError, ValueError) as exc:
                raise BundleError(f"{path}: neighbour vote is malformed ({exc})") from None
        calibration = None
        meta = manifest.get("calibration")
        if meta:
            try:
                domain = DomainModel.from_arrays(arrays, float(meta["domain_typical"]), float(meta["domain_threshold"]))
                n_domain = n_features
                if meta.get("domain_featurization") is not None:
                    domain.featurization = str(meta["domain_featurization"])
                    if domain.featurization not in FEATURIZATIONS:
                        raise ValueError(f"domain featurization {domain.featurization!r} is not one of "
                                         f"{', '.join(FEATURIZATIONS)}")
                    n_domain = len(make_featurizer(domain.featurization, grid).feature_names_)
                if meta.get("domain_far_limits") is not None:
                    domain.far_limits = check_band_limits(meta["domain_far_limits"], "domain_far_limits")
                if meta.get("domain_spread_limits") is not None:
                    domain.spread_limits = check_band_limits(meta["domain_spread_limits"], "domain_spread_limits")
                    domain.spread_property = str(meta.get("domain_spread_property", domain.spread_property))
                    if props.get(domain.spread_property, None) is None or \
                            props[domain.spread_property].kind != "regressor":
                        raise ValueError(f"domain spread property {domain.spread_property!r} is not a regressor "
                                         "of this bundle")
                if meta.get("domain_joint_limits") is not None:
                    if domain.spread_limits is None:
                        raise ValueError("domain_joint_limits without domain_spread_limits")
                    domain.alone_limits = check_band_limits(meta.get("domain_alone_limits"), "domain_alone_limits")
                    domain.joint_limits = check_band_limits(meta["domain_joint_limits"], "domain_joint_limits")
                if domain.reference.ndim != 2 or domain.reference.shape[1] != n_domain or \
                        domain.center.shape != (n_domain,) or domain.scale.shape != (n_domain,):
                    raise ValueError("domain model arrays do not match the features")
                far = meta.get("confidence_knots_out_of_domain")
                across_knots = meta.get("confidence_knots_across_codes")
                calibration = Calibration(confidence_knots=check_knots(meta["confidence_knots"]),
                                          confidence_knots_far=None if far is None else check_knots(far),
                                          quantiles=check_quantiles(meta["quantiles"], props, "quantiles"),
                                          across_codes=check_quantiles(meta.get("quantiles_across_codes", {}),
                                                                       meta["quantiles"], "quantiles_across_codes"),
                                          quantiles_in_domain=check_quantiles(meta.get("quantiles_in_domain", {}),
                                                                              meta["quantiles"],
                                                                              "quantiles_in_domain"),
                                          scale_bins=check_scale_bins(meta.get("quantiles_in_domain_by_scale", {}),
                                                                      meta.get("quantiles_in_domain", {}),
                                                                      "quantiles_in_domain_by_scale"),
                                          spread_floors=check_spread_floors(meta.get("interval_spread_floors", {}),
                                                                            meta["quantiles"]),
                                          confidence_knots_across=None if across_knots is None
                                          else check_knots(across_knots),
                                          domain=domain, method=meta.get("method", {}))
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                raise BundleError(f"{path}: calibration record is malformed ({type(exc).__name__}: {exc})") from None
        return cls(element=manifest["element"], edge=manifest["edge"], grid=grid,
                   normalization=manifest["normalization"], featurization=manifest["featurization"],
                   feature_names=arrays["feature_names"], energy_ranges=arrays["energy_ranges"], properties=props,
                   config=manifest["config"], training_data_hash=manifest["training_data_hash"],
                   n_spectra=manifest["n_spectra"], sources=manifest["sources"],
                   coverage_curve=manifest.get("coverage_curve", {}), versions=manifest["versions"],
                   calibration=calibration, vote=vote, format_version=manifest["format_version"])


#: Largest bundle accepted, uncompressed (a study-size model of one element is ~100-200 MB).
MAX_BUNDLE_BYTES = 512 * 2**20
MAX_BUNDLE_ENTRIES = 1000


def _check_archive(path: Path) -> None:
    """Refuse a file that would decompress to more than :data:`MAX_BUNDLE_BYTES` (a zip bomb),
    from the archive's directory alone, before anything is decompressed."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{path}: not a readable model bundle ({type(exc).__name__}: {exc})") from None
    total = sum(i.file_size for i in infos)
    if len(infos) > MAX_BUNDLE_ENTRIES or total > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path}: {len(infos)} entries, {total / 2**20:.0f} MiB uncompressed: over the limits "
                          f"({MAX_BUNDLE_ENTRIES}, {MAX_BUNDLE_BYTES / 2**20:.0f} MiB); refusing to decompress")


def _bundle_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical manifest (sorted JSON, without the digest itself); it covers every
    field and, through the per-array sha256 table inside it, every array."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def summarize(pm: PropertyModel, per_seed: np.ndarray, second: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Mean prediction and seed spread from (seeds, rows, outputs) forest outputs.

    Classifier: ``proba`` (rows, classes) seed-mean probabilities, ``prediction`` the argmax class,
    ``probability`` its mean probability, ``spread`` the std over seeds of that probability.
    Regressor: ``prediction`` the seed mean, ``std`` the std over seeds; given ``second`` (the
    per-seed mean squares of the same outputs), ``tree_std`` the std over every tree (the
    property's unit): where the trees disagree, which the domain flag reads
    (:class:`~.calibration.DomainModel`).
    """
    if pm.kind == "classifier":
        proba = per_seed.mean(axis=0)
        k = np.argmax(proba, axis=1)
        rows = np.arange(len(k))
        return {"proba": proba, "prediction": pm.packed.classes[k], "probability": proba[rows, k],
                "spread": per_seed[:, rows, k].std(axis=0), "classes": pm.packed.classes}
    vals = per_seed[:, :, 0]
    out = {"prediction": vals.mean(axis=0), "std": vals.std(axis=0)}
    if second is not None:
        out["tree_std"] = tree_std(per_seed, second)[:, 0]
    return out


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("xanes-agent", "numpy", "scikit-learn", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out
