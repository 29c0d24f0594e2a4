"""Scheduled alerts: rules over device state and KPIs, alert state in PostgreSQL, notifications to SNS."""
