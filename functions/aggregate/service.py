"""One aggregate run, incremental or a backfill: plans with the window maths, computes with the PostgreSQL adapter.

An incremental run is two transactions. The first moves the ingest's dirty marks to kpi_pending_hours;
the second takes them, recomputes their windows and every window closed since the previous run, upserts
device and fleet KPIs and advances the watermark. A crash in between, or during the second, loses no mark:
the pending hours stay (or come back with the rollback) for the next run. Re-running is idempotent: a
window's KPIs are a function of its readings.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg
from common.db import Database

from aggregate import postgres
from aggregate.plan import RunPlan, plan_full_recompute, plan_incremental
from aggregate.settings import DEFAULT_MAX_CATCHUP_WINDOWS
from aggregate.windows import initial_watermark


@dataclass(frozen=True)
class RunSummary:
    mode: str  # "incremental" or "full_recompute"
    now: str
    dirty_hours: int  # hours taken from the ingest's marks (incremental runs)
    devices: int  # devices whose windows were computed
    windows_planned: int
    device_windows_written: int  # device_kpi rows upserted (empty open windows get none)
    fleet_windows_written: int
    watermark: str | None  # closed-windows watermark after the run
    duration_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def _compute(conn: psycopg.Connection, plan: RunPlan, now: datetime) -> tuple[int, int]:
    written = postgres.upsert_device_kpis(conn, plan.items, now)
    fleet = postgres.upsert_fleet_kpis(conn, plan.fleet_windows, now)
    return written, fleet


def run_incremental(
    db: Database, now: datetime | None = None, max_catchup_windows: int = DEFAULT_MAX_CATCHUP_WINDOWS
) -> RunSummary:
    """`now` defaults to the database clock (tests pass one to place windows)."""
    started = time.perf_counter()
    with db.transaction() as conn:
        postgres.claim_dirty_hours(conn)
    with db.transaction() as conn:
        state = postgres.lock_state(conn)
        now = now or state.db_now
        pending = postgres.take_pending_hours(conn)
        previous = state.closed_until or initial_watermark(now)
        plan = plan_incremental(pending, postgres.device_ids(conn), previous, now, max_catchup_windows)
        written, fleet = _compute(conn, plan, now)
        summary = RunSummary(
            mode="incremental",
            now=now.isoformat(),
            dirty_hours=len(pending),
            devices=plan.device_count,
            windows_planned=len(plan.items),
            device_windows_written=written,
            fleet_windows_written=fleet,
            watermark=plan.watermark.isoformat() if plan.watermark else None,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        postgres.save_state(conn, plan.watermark, summary.as_dict())
    return summary


def run_full_recompute(db: Database, start: datetime, end: datetime, now: datetime | None = None) -> RunSummary:
    """Recompute every window of every device in the hours overlapping [start, end) (a backfill); dirty
    marks and the watermark are left to the incremental runs."""
    started = time.perf_counter()
    with db.transaction() as conn:
        state = postgres.lock_state(conn)
        now = now or state.db_now
        plan = plan_full_recompute(postgres.device_ids(conn), start, end, now)
        written, fleet = _compute(conn, plan, now)
        summary = RunSummary(
            mode="full_recompute",
            now=now.isoformat(),
            dirty_hours=0,
            devices=plan.device_count,
            windows_planned=len(plan.items),
            device_windows_written=written,
            fleet_windows_written=fleet,
            watermark=state.closed_until.isoformat() if state.closed_until else None,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
    return summary
