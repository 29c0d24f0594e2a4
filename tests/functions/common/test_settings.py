"""The settings helpers every function reads its environment with: defaults, parsing, and errors that name
the variable."""

import pytest
from common.settings import ConfigError, env_float, env_int, env_required, env_str


@pytest.mark.parametrize("environ", [{}, {"N": ""}, {"N": "  "}])
def test_numbers_left_unset_or_blank_take_their_default(environ):
    assert env_int(environ, "N", 7) == 7
    assert env_float(environ, "N", 2.5) == 2.5


def test_numbers_parse_with_surrounding_spaces():
    assert env_int({"N": " 42 "}, "N", 7) == 42
    assert env_float({"N": "-85.5"}, "N", 0.0) == -85.5
    assert env_float({"N": "3"}, "N", 0.0) == 3.0


@pytest.mark.parametrize(
    ("helper", "raw", "message"),
    [
        (env_int, "12.5", "N='12.5' is not a whole number"),
        (env_int, "twelve", "N='twelve' is not a whole number"),
        (env_float, "weak", "N='weak' is not a number"),
        (env_float, "nan", "N=nan is not a finite number"),
        (env_float, "-inf", "N=-inf is not a finite number"),
    ],
)
def test_a_value_that_does_not_parse_names_the_variable(helper, raw, message):
    with pytest.raises(ConfigError) as error:
        helper({"N": raw}, "N", 1)
    assert str(error.value) == message


def test_ranges_are_inclusive_and_enforced():
    assert env_int({"N": "1"}, "N", 5, minimum=1, maximum=9) == 1
    assert env_int({"N": "9"}, "N", 5, minimum=1, maximum=9) == 9
    with pytest.raises(ConfigError, match=r"^N=0 is below its minimum 1$"):
        env_int({"N": "0"}, "N", 5, minimum=1)
    with pytest.raises(ConfigError, match=r"^N=10 is above its maximum 9$"):
        env_int({"N": "10"}, "N", 5, maximum=9)
    with pytest.raises(ConfigError, match=r"^N=-0.5 is below its minimum 0$"):
        env_float({"N": "-0.5"}, "N", 1.0, minimum=0)


def test_text_is_taken_as_it_is_and_required_text_must_be_there():
    assert env_str({}, "S", "telemetry/") == "telemetry/"
    assert env_str({"S": ""}, "S", "telemetry/") == ""  # an empty value is a value (e.g. no prefix)
    assert env_required({"S": "arn:aws:sns:us-east-1:1:t"}, "S") == "arn:aws:sns:us-east-1:1:t"
    for environ in ({}, {"S": " "}):
        with pytest.raises(ConfigError, match=r"^S is not set$"):
            env_required(environ, "S")


def test_config_errors_are_value_errors():
    """Callers that validated input with ValueError (and the database settings' errors) catch them alike."""
    assert issubclass(ConfigError, ValueError)
