"""What the agent commands print: one line per run, a small table per measured spectrum."""

from __future__ import annotations

from ..foundation.properties import CHARGE, DISTANCE, PROPERTIES, REGRESSORS, charge_title
from ..models.calibration import domain_words


def print_report(rep: dict) -> None:
    preds = rep.get("predictions") or {}
    line = [f"run {str(rep.get('raw_run_uid', '?'))[:8]} {rep.get('element', '?')}: {rep.get('n_points', 0)} points"]
    if "coordination_number" in preds:
        p = preds["coordination_number"]
        line.append(f"CN {int(p['prediction'])} (p={p['probability']:.2f})")
    for name in REGRESSORS:  # an oxidation state has no unit; "e" only for a charge that is one
        if name in preds:
            unit = PROPERTIES[name].unit_for(rep.get("charge_label") if name == CHARGE else None, display=True)
            line.append(f"{name} {preds[name]['prediction']:.3f}±{preds[name]['std']:.3f} {unit}".rstrip())
    if rep.get("n_dropped"):
        line.append(f"{rep['n_dropped']} non-finite readings dropped")
    if rep.get("n_rejected"):
        line.append(f"{rep['n_rejected']} impossible readings rejected")
    if rep.get("in_domain") is False:
        line.append(domain_words(rep) + ", treat with care")
    print(", ".join(line))


def format_prediction(rec: dict) -> list[str]:
    """The terminal lines of one ``predict`` record."""
    head = f"{rec['name']}  [{rec['format']}]  {rec['element']} {rec['edge']}-edge"
    head += f" ({rec['element_from']})" if rec.get("element_from") and rec["element_from"] != "given" else ""
    lines = [head + f"  {rec['signal']}"]
    e0 = f"E0 {rec['e0']:.1f} eV, " if rec.get("e0") else ""
    lines.append(f"  {rec['n_points']} points {rec['energy_range'][0]:.0f}-{rec['energy_range'][1]:.0f} eV, {e0}"
                 f"model window covered {100 * rec['coverage']:.0f} %")
    for name, prop in PROPERTIES.items():
        p = rec["predictions"].get(name)
        if p is None:
            continue
        label = charge_title(rec.get("charge_label")) if name == CHARGE else prop.title
        if prop.kind == "classifier":
            before = max(p["raw_proba"]) if "raw_proba" in p else None  # before calibration
            shown = before is not None and abs(before - p["probability"]) > 5e-3
            raw = f" (uncalibrated {before:.2f})" if shown else ""
            if p.get("across_codes"):  # which map the probability went through
                raw += "  (across codes)"
            lines.append(f"  {label:<20s} {int(p['prediction']):d}        P = {p['probability']:.2f}{raw}")
            continue
        unit = prop.unit_for(rec.get("charge_label") if name == CHARGE else None, display=True)
        fmt = ".3f" if name == DISTANCE else ".2f"
        iv = "".join(f"   {lvl} %: [{p[f'interval{lvl}'][0]:{fmt}}, {p[f'interval{lvl}'][1]:{fmt}}]"
                     for lvl in (68, 90) if f"interval{lvl}" in p)
        if not iv:  # a bundle without calibration: only the seed spread, and it says so
            iv = f"   +- {p['std']:{fmt}} (seed spread, not calibrated)"
        elif "across_codes" in p:  # which calibration the intervals come from
            iv += "  (across codes)" if p["across_codes"] else "  (same-code calibration)"
        lines.append(f"  {label:<20s} {p['prediction']:{fmt}} {unit:<2s}{iv}")
    if "in_domain" in rec:
        lines.append("  domain: " + domain_words(rec) + ("" if rec["in_domain"] else ", treat with care"))
    for n in rec.get("notes", []):
        lines.append(f"  note: {n}")
    return lines
