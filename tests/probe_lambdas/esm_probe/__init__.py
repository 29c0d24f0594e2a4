"""A test function for the event source mapping poller: its behaviour is set by the records it receives."""
