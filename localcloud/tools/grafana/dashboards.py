"""The project's dashboards as data: every panel (those nested in rows too), its SQL queries, and the
template variables resolved the way Grafana's variable pickers resolve them, against a database.

Used by the dashboard tests and the dashboard benchmark, so that both run exactly the queries Grafana runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from localcloud.config import REPO_ROOT
from localcloud.tools.grafana.expand import ALL, Interval, TimeRange, Variable, calculate_interval, expand

DASHBOARDS_DIR = REPO_ROOT / "grafana" / "dashboards"
DEFAULT_MAX_DATA_POINTS = 1000  # Grafana uses the panel's width in pixels; a wide panel on a laptop screen
DATASOURCE_MIN_INTERVAL = "1m"  # jsonData.timeInterval of the provisioned data source

RunQuery = Callable[[str], Sequence[Sequence[object]]]  # expanded SQL -> rows (column order as selected)


@dataclass(frozen=True)
class PanelQuery:
    """One SQL target of a panel, or a template variable's query (panel_type "variable")."""

    dashboard_uid: str
    panel_id: int | None
    panel_title: str
    panel_type: str
    ref_id: str
    raw_sql: str
    format: str  # "time_series" or "table"
    min_interval: str
    max_data_points: int

    @property
    def label(self) -> str:
        return f"{self.dashboard_uid} / {self.panel_title} / {self.ref_id}"

    def interval(self, time_range: TimeRange) -> Interval:
        return calculate_interval(time_range, self.max_data_points, self.min_interval)

    def expand(self, time_range: TimeRange, variables: Mapping[str, Variable], timescaledb: bool = False) -> str:
        return expand(self.raw_sql, time_range, self.interval(time_range), variables, timescaledb)


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]


def iter_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel; a collapsed row holds its panels inside itself, an open row is followed by them."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dashboard: dict) -> list[PanelQuery]:
    """Every SQL target of every panel (rows have none) plus every query variable's query."""
    queries = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            queries.append(
                PanelQuery(
                    dashboard_uid=dashboard["uid"],
                    panel_id=panel.get("id"),
                    panel_title=panel.get("title", ""),
                    panel_type=panel["type"],
                    ref_id=target.get("refId", ""),
                    raw_sql=target.get("rawSql", ""),
                    format=target.get("format", "time_series"),
                    min_interval=panel.get("interval") or DATASOURCE_MIN_INTERVAL,
                    max_data_points=panel.get("maxDataPoints", DEFAULT_MAX_DATA_POINTS),
                )
            )
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            queries.append(
                PanelQuery(
                    dashboard_uid=dashboard["uid"],
                    panel_id=None,
                    panel_title=f"variable {variable['name']}",
                    panel_type="variable",
                    ref_id=variable["name"],
                    raw_sql=_variable_sql(variable),
                    format="table",
                    min_interval=DATASOURCE_MIN_INTERVAL,
                    max_data_points=DEFAULT_MAX_DATA_POINTS,
                )
            )
    return queries


def _variable_sql(variable: dict) -> str:
    query = variable.get("query", "")
    return query.get("rawSql", query.get("query", "")) if isinstance(query, dict) else query


def custom_options(query: str) -> list[str]:
    """A custom variable's `text : value` list, commas escaped as `\\,` (Grafana's custom variable parser)."""
    options = []
    for item in re.findall(r"(?:\\,|[^,])+", query):
        text = item.strip().replace("\\,", ",")
        pair = re.fullmatch(r"\s*(.+)\s:\s(.+)", text)
        options.append(pair.group(2).strip() if pair else text)
    return options


def _option_values(rows: Sequence[Sequence[object]]) -> list[str]:
    """metricFindQuery's reading of a result: every value of every column, in order, without repeats."""
    seen: dict[str, None] = {}
    for row in rows:
        for value in row:
            if value is not None:
                seen.setdefault(str(value), None)
    return list(seen)


def current_value(variable: dict, options: list[str], override: str | tuple[str, ...] | None) -> str | tuple[str, ...]:
    multi = bool(variable.get("multi"))
    wanted = override if override is not None else variable.get("current", {}).get("value")
    values = tuple(wanted) if isinstance(wanted, list | tuple) else (wanted,) if wanted is not None else ()
    if values[:1] == (ALL,) and variable.get("includeAll"):
        return (ALL,) if multi else ALL
    kept = tuple(v for v in values if v in options)
    if not kept:
        kept = tuple(options[:1])  # Grafana falls back to the first option
    return kept if multi else (kept[0] if kept else "")


def resolve_variables(
    dashboard: dict,
    time_range: TimeRange,
    run: RunQuery,
    overrides: Mapping[str, str | tuple[str, ...]] | None = None,
) -> dict[str, Variable]:
    """Each variable in dashboard order (later queries may use earlier variables), with its options and its
    current value: the dashboard's saved one, an override, or the first option when neither exists."""
    overrides = overrides or {}
    resolved: dict[str, Variable] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        kind = variable["type"]
        if kind == "query":
            interval = calculate_interval(time_range, DEFAULT_MAX_DATA_POINTS, DATASOURCE_MIN_INTERVAL)
            options = _option_values(run(expand(_variable_sql(variable), time_range, interval, resolved)))
        elif kind == "custom":
            options = custom_options(variable.get("query", ""))
        elif kind in ("constant", "textbox"):
            options = [variable.get("query", "")]
        else:
            raise ValueError(f"{dashboard['uid']}: unsupported variable type {kind!r} ({variable['name']})")
        name = variable["name"]
        resolved[name] = Variable(
            name=name,
            value=current_value(variable, options, overrides.get(name)),
            multi=bool(variable.get("multi")),
            include_all=bool(variable.get("includeAll")),
            all_value=variable.get("allValue") or None,
            options=tuple(options),
        )
    return resolved
