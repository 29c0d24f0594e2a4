"""The execution plane: one process running the IoT rules engine, the Kinesis event source mapping poller, the
scheduler and the Lambda invoker, with a control API."""
