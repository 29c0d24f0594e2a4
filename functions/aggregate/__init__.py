"""The KPI aggregation Lambda: per-device 5-minute and hourly KPI windows, and fleet availability."""
