"""Grafana without Grafana: expand dashboard queries exactly as Grafana does, to test and time them; and the
read-only login Grafana connects with."""
