"""What a developer runs: the `localcloud` CLI, the demo, the KPI report, the device simulator and the
dashboard checks."""
