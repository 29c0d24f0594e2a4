"""The IoT SQL function library (https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html),
one module per family; names are case-insensitive (the reference writes Ltrim, Round, isNull)."""

from __future__ import annotations

from localcloud.runtime.iot.functions import data, datetimes, encoding, hashing, message, numeric, regex, services
from localcloud.runtime.iot.functions import strings as string_functions
from localcloud.runtime.iot.functions.base import Function
from localcloud.runtime.iot.sql_ast import UnsupportedSql

__all__ = ["FUNCTIONS", "Function", "lookup"]

FUNCTIONS: dict[str, Function] = {
    function.name: function
    for module in (data, datetimes, encoding, hashing, message, numeric, regex, services, string_functions)
    for function in module.FUNCTIONS
}
REFUSED = {
    "machinelearning_predict": "machinelearning_predict() needs Amazon Machine Learning, which has no local "
    "equivalent (and is closed to new customers)",
}


def lookup(name: str) -> Function:
    """The function called `name` (any case); UnsupportedSql naming it when there is none we can run."""
    key = name.lower()
    if key in REFUSED:
        raise UnsupportedSql(REFUSED[key])
    if key not in FUNCTIONS:
        raise UnsupportedSql(f"function {name}() is not in the AWS IoT SQL reference")
    return FUNCTIONS[key]
