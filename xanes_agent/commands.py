"""Subcommands of the models, simulator and agent rooms, registered on the ``xanes-agent`` parser."""

from __future__ import annotations
