"""Bluesky plans: the adaptive XANES scan, and the queue-safe survey and ranges plans it is built from."""

from .adaptive import adaptive_xanes_scan, stable_reason, stop_reason
from .xas import xas_ranges_scan, xas_survey_scan

__all__ = ["adaptive_xanes_scan", "stable_reason", "stop_reason", "xas_ranges_scan", "xas_survey_scan"]
