"""The aggregate's settings from the environment (the function's `environment` in stack.yaml)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from common.settings import env_int

DEFAULT_MAX_CATCHUP_WINDOWS = 288  # one day of 5-minute windows per run


@dataclass(frozen=True)
class AggregateSettings:
    # Closed windows one incremental run computes at most when it is behind; the next runs carry on.
    max_catchup_windows: int = DEFAULT_MAX_CATCHUP_WINDOWS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> AggregateSettings:
        return cls(env_int(environ, "MAX_CATCHUP_WINDOWS", DEFAULT_MAX_CATCHUP_WINDOWS, minimum=1))
