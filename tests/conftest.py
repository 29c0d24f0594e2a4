"""Shared fixtures: each area registers its own in tests/fixtures/<area>.py."""

pytest_plugins = [
    "tests.fixtures.aws",
    "tests.fixtures.postgres",
    "tests.fixtures.mqtt",
    "tests.fixtures.local_cloud",
]
