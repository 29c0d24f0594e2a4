"""The per-day state machine (see common/migrations/003_archive.sql). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class State(StrEnum):
    EXPORTING = "exporting"
    UPLOADED = "uploaded"
    VERIFIED = "verified"
    DROPPED = "dropped"


# Where each state may go. Back to EXPORTING: a read-back that does not match, or readings that arrived for
# the day after its export (the database still holds every row, so re-exporting loses nothing). From
# DROPPED: late readings recreated the day; its archive is merged back into the database first.
TRANSITIONS: dict[State | None, frozenset[State]] = {
    None: frozenset({State.EXPORTING}),
    State.EXPORTING: frozenset({State.EXPORTING, State.UPLOADED}),
    State.UPLOADED: frozenset({State.VERIFIED, State.EXPORTING}),
    State.VERIFIED: frozenset({State.DROPPED, State.EXPORTING}),
    State.DROPPED: frozenset({State.EXPORTING}),
}


class TransitionError(RuntimeError):
    """A state change the machine does not allow (a bug, or two runs at once)."""


def check_transition(old: State | None, new: State) -> None:
    if new not in TRANSITIONS[old]:
        raise TransitionError(f"archive state {old} -> {new} is not allowed")


@dataclass(frozen=True)
class DayState:
    day: date
    state: State
    manifest_key: str
    manifest_sha256: str | None = None
    row_count: int | None = None
    attempts: int = 0
