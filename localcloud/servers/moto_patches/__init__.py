"""Fixes to moto server's behaviour that the local cloud depends on (see README, "Where it differs").

One module per AWS service. Each patch targets moto 5.2.5 (pinned) and says why it exists. `apply()` installs
them all before the server imports any backend; it is idempotent.
"""

from __future__ import annotations

from localcloud.servers.moto_patches import (
    awslambda,
    awslambda_deploy,
    dispatch,
    iot,
    iot_rules,
    kinesis,
    kinesis_responses,
    logs,
)


def apply() -> None:
    """Apply every patch; idempotent."""
    kinesis.apply()
    kinesis_responses.apply()
    awslambda.apply()
    awslambda_deploy.apply()
    iot.apply()
    iot_rules.apply()  # after kinesis: the rules are kept in its store
    logs.apply()
    dispatch.apply()
