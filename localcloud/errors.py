"""The one error type a user can act on: the CLI prints its message without a traceback."""


class LocalCloudError(RuntimeError):
    """A failure the user can act on; the message says what to do."""
