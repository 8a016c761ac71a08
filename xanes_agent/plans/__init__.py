"""Bluesky plans: the adaptive XANES scan, and the queue-safe survey and ranges plans it is built from.

Importing them loads bluesky and ophyd, not scikit-learn: a queue-server worker stays light."""

from .adaptive import adaptive_xanes_scan
from .xas import opening_passes, xas_ranges_scan, xas_survey_scan

__all__ = ["adaptive_xanes_scan", "opening_passes", "xas_ranges_scan", "xas_survey_scan"]
