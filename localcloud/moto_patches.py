"""Fixes to moto server's behaviour that the local cloud depends on (see README, "Where it differs")."""

from __future__ import annotations


def apply() -> None:
    """Apply every patch; idempotent."""
