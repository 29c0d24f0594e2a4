"""Choosing the schema flavour: pure logic. On real servers: tests/functions/common/test_migrations.py."""

from __future__ import annotations

import pytest
from common.flavour import FlavourError, TimescaleSupport, choose_flavour, requested_flavour
from common.settings import ConfigError

HOSTS = TimescaleSupport(library_loaded=True, extension_available=True)
NOT_PRELOADED = TimescaleSupport(library_loaded=False, extension_available=True)
NOT_INSTALLED = TimescaleSupport(library_loaded=False, extension_available=False)
LIBRARY_WITHOUT_EXTENSION = TimescaleSupport(library_loaded=True, extension_available=False)
PRELOAD_HINT = "the server does not load the timescaledb library: add timescaledb to shared_preload_libraries"
INSTALL_HINT = "the server has no timescaledb extension"


@pytest.mark.parametrize(
    ("environ", "requested"),
    [({}, "auto"), ({"IOTKPI_DB_FLAVOUR": " "}, "auto"), ({"IOTKPI_DB_FLAVOUR": " Timescale "}, "timescale"),
     ({"IOTKPI_DB_FLAVOUR": "postgres"}, "postgres"), ({"IOTKPI_DB_FLAVOUR": "auto"}, "auto")],
)  # fmt: skip
def test_requested_flavour_reads_the_environment(environ, requested):
    assert requested_flavour(environ) == requested


def test_an_unknown_requested_flavour_names_the_variable_and_the_choices():
    with pytest.raises(ConfigError, match=r"IOTKPI_DB_FLAVOUR='timescaledb' is not one of auto, postgres, timescale"):
        requested_flavour({"IOTKPI_DB_FLAVOUR": "timescaledb"})


@pytest.mark.parametrize(
    ("support", "flavour"),
    [(HOSTS, "timescale"), (NOT_PRELOADED, "postgres"), (NOT_INSTALLED, "postgres"),
     (LIBRARY_WITHOUT_EXTENSION, "postgres")],
)  # fmt: skip
def test_auto_takes_timescale_only_when_the_library_is_loaded_and_the_extension_installed(support, flavour):
    assert choose_flavour("auto", None, support) == flavour


def test_an_explicit_request_is_honoured_on_a_new_database():
    assert choose_flavour("timescale", None, HOSTS) == "timescale"
    assert choose_flavour("postgres", None, HOSTS) == "postgres"
    assert choose_flavour("postgres", None, NOT_INSTALLED) == "postgres"


@pytest.mark.parametrize(
    ("support", "hint"), [(NOT_PRELOADED, PRELOAD_HINT), (NOT_INSTALLED, INSTALL_HINT),
                          (LIBRARY_WITHOUT_EXTENSION, INSTALL_HINT)]
)  # fmt: skip
def test_timescale_requested_from_a_server_that_cannot_host_it_says_why(support, hint):
    with pytest.raises(FlavourError, match=f"^IOTKPI_DB_FLAVOUR=timescale, but {hint}"):
        choose_flavour("timescale", None, support)


@pytest.mark.parametrize("requested", ["auto", "postgres", "timescale"])
def test_a_database_keeps_its_recorded_flavour(requested):
    if requested == "timescale":
        with pytest.raises(FlavourError, match="migrated with the postgres flavour and keeps it: unset IOTKPI_DB"):
            choose_flavour(requested, "postgres", HOSTS)
    else:
        assert choose_flavour(requested, "postgres", HOSTS) == "postgres"  # auto does not upgrade it either


def test_a_timescale_database_refuses_the_postgres_flavour():
    with pytest.raises(FlavourError, match=r"IOTKPI_DB_FLAVOUR=postgres, but .* migrated with the timescale flavour"):
        choose_flavour("postgres", "timescale", HOSTS)
    assert choose_flavour("auto", "timescale", HOSTS) == choose_flavour("timescale", "timescale", HOSTS) == "timescale"


@pytest.mark.parametrize("requested", ["auto", "timescale"])
def test_a_timescale_database_on_a_server_without_the_library_is_refused_with_the_cause(requested):
    with pytest.raises(
        FlavourError, match=f"^this database was migrated with the timescale flavour, but {PRELOAD_HINT}"
    ):
        choose_flavour(requested, "timescale", NOT_PRELOADED)
