"""Bluesky plans: the adaptive XANES scan, and baselines for comparing strategies."""

from .adaptive import adaptive_xanes_scan, stop_reason

__all__ = ["adaptive_xanes_scan", "stop_reason"]
