"""Per-element summary of ``benchmarks/transfer.py`` tables, one run or two side by side (before -> after).

    python scripts/transfer_summary.py out/transfer_s16/transfer.md [out/transfer_s21/transfer.md]

Reads the first configuration's table of each ``transfer.md`` (the benchmark writes one per
configuration) and prints the rows the README shows: CN balanced accuracy with families left out
(without and with the real-structure sites in training) and with parent structures left out, the
CN accuracy, distance and oxidation-state errors with parents left out beside the best constant
answer, and the Cu transfer between codes.
"""

from __future__ import annotations

import argparse

ELEMENTS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
# columns of the benchmark's table
BAL, ACC, MODAL, D, D_BASE, OX, OX_BASE = 3, 4, 5, 6, 7, 9, 10
ROWS = (("families left out: CN balanced accuracy", " leave-family-out", BAL, None),
        ("families left out, hosts in training: CN balanced accuracy", " leave-family-out, hosts in training", BAL,
         None),
        ("parents left out: CN balanced accuracy", " leave-parent-out", BAL, None),
        ("parents left out: CN accuracy (modal class)", " leave-parent-out", ACC, MODAL),
        ("parents left out: distance MAE, Å (best constant)", " leave-parent-out", D, D_BASE),
        ("parents left out: oxidation-state MAE (best constant)", " leave-parent-out", OX, OX_BASE))
CODES = ("Cu FEFF10 -> OmniXAS FEFF9", "Cu OmniXAS FEFF9 -> FEFF10")


def load(path: str) -> dict[str, list[str]]:
    """Rows of the first table in a ``transfer.md``, by evaluation name."""
    rows: dict[str, list[str]] = {}
    for line in open(path, encoding="utf-8"):
        if line.startswith("### ") and rows:
            break
        if line.startswith("| ") and "evaluation" not in line:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="+", help="one transfer.md, or two: before and after")
    a = ap.parse_args()
    if len(a.tables) > 2:
        ap.error("one table, or two (before, after)")
    after = load(a.tables[-1])
    before = load(a.tables[0]) if len(a.tables) == 2 else None

    def cell(key: str, col: int) -> str:
        if key not in after:
            return "-"
        if before is None or key not in before:
            return after[key][col]
        return f"{before[key][col]} -> {after[key][col]}"

    print("| | " + " | ".join(ELEMENTS) + " | mean |")
    print("|---" * (len(ELEMENTS) + 2) + "|")
    for label, suffix, col, base in ROWS:
        cells = [cell(el + suffix, col) + (f" ({after[el + suffix][base]})" if base and el + suffix in after else "")
                 for el in ELEMENTS]
        mean = ""
        if base is None and all(el + suffix in after for el in ELEMENTS):
            m_after = sum(float(after[el + suffix][col]) for el in ELEMENTS) / len(ELEMENTS)
            mean = f"{m_after:.2f}"
            if before is not None and all(el + suffix in before for el in ELEMENTS):
                mean = f"{sum(float(before[el + suffix][col]) for el in ELEMENTS) / len(ELEMENTS):.2f} -> " + mean
        print(f"| {label} | " + " | ".join(cells) + f" | {mean} |")
    print()
    for key in CODES:
        if key in after:
            print(f"* {key}: CN balanced accuracy {cell(key, BAL)}, accuracy {cell(key, ACC)} (modal class "
                  f"{after[key][MODAL]}), distance MAE {cell(key, D)} Å (best constant {after[key][D_BASE]})")


if __name__ == "__main__":
    main()
