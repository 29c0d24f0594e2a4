"""AggregateSettings.from_env: the catch-up bound of an incremental run."""

import pytest
from aggregate.settings import DEFAULT_MAX_CATCHUP_WINDOWS, AggregateSettings
from common.settings import ConfigError


def test_max_catchup_windows_from_the_environment_or_its_default():
    assert AggregateSettings.from_env({}).max_catchup_windows == DEFAULT_MAX_CATCHUP_WINDOWS == 288
    assert AggregateSettings.from_env({"MAX_CATCHUP_WINDOWS": "12"}).max_catchup_windows == 12


@pytest.mark.parametrize("raw", ["0", "-3", "1.5"])
def test_a_run_that_could_not_advance_is_refused(raw):
    with pytest.raises(ConfigError, match="MAX_CATCHUP_WINDOWS"):
        AggregateSettings.from_env({"MAX_CATCHUP_WINDOWS": raw})
