"""EventBridge Scheduler schedules and EventBridge rules: expressions and the firing loop."""
