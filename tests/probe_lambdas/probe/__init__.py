"""A Lambda function built to probe the local invoker: what it does is chosen by the event."""
