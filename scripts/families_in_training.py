"""Do the prototype families teach the models anything about real structures?

    python scripts/families_in_training.py [ELEMENT ...]   (default: Cu Mn Fe)

For each element, the host-structure spectra (real Materials Project parents) are predicted with
their parent structures held out (5 folds), once with every prototype-family spectrum in each
fold's training and once without any; for Cu also the OmniXAS FEFF 9 spectra (another code, real
structures, parents never on both sides), trained on the project's FEFF10 Cu spectra with and
without the families. The models are the benchmark's (``benchmarks/transfer.py``: polynomial
features, one seed x 100 trees, the CN vote of the 5 nearest parent structures at 0.5). Rows as in
its table: CN balanced accuracy, accuracy, modal class, distance MAE (A), best constant, R^2,
oxidation-state MAE, best constant.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import transfer as T  # noqa: E402  (the benchmark's own preparation and folds)

from xanes_agent.data.library import PROJECT_SOURCE, load_bundled_library  # noqa: E402
from xanes_agent.data.omnixas import SOURCE as OMNIXAS_SOURCE  # noqa: E402
from xanes_agent.models.evaluation import EvalConfig, group_folds  # noqa: E402
from xanes_agent.models.features import DEFAULT_GRID, make_featurizer  # noqa: E402


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning)
    elements = sys.argv[1:] or ["Cu", "Mn", "Fe"]
    lib = load_bundled_library()
    feat = make_featurizer("polynomial", DEFAULT_GRID)
    cfg = EvalConfig(n_estimators=100, neighbour_vote=0.5, voters="parent")
    print(T.HEADER)
    for el in elements:
        coll = lib.where(source=PROJECT_SOURCE, element=el)
        every = T.Prepared(coll, feat, False)
        family = np.char.startswith(every.groups.astype(str), "family:")
        hosts = T.Prepared(coll[np.flatnonzero(~family)], feat, False)
        folds = group_folds(every.groups, 5)
        folds[family] = -1  # a family row trains in every fold and is never scored
        rows = {f"{el} hosts, parents out, families in training": T.within(every, np.arange(len(coll)), folds, cfg),
                f"{el} hosts, parents out, no families": T.within(hosts, np.arange(len(hosts.F)),
                                                                   group_folds(hosts.groups, 5), cfg)}
        omni = None
        if el == "Cu":
            omni = T.Prepared(lib.where(source=OMNIXAS_SOURCE, element="Cu"), feat, False)
            rows["Cu FEFF10 -> OmniXAS FEFF 9, families in training"] = T.across(every, omni, 5, cfg)
            rows["Cu FEFF10 -> OmniXAS FEFF 9, no families"] = T.across(hosts, omni, 5, cfg)
        for name, s in rows.items():
            groups = omni.groups if "OmniXAS" in name else hosts.groups
            print(T._row(name, s, len(np.unique(groups))), flush=True)


if __name__ == "__main__":
    main()
