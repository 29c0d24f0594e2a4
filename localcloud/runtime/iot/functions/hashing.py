"""Hashing functions md2, md5, sha1, sha224, sha256, sha384, sha512
(https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html#iot-sql-function-hash): the lowercase
hex digest of the argument's UTF-8 bytes, non-strings converted by the standard string conversion.

MD2 (RFC 1319) is not in Python's hashlib (OpenSSL dropped it), so it is implemented here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from localcloud.runtime.iot.conversions import to_string
from localcloud.runtime.iot.functions.base import Function
from localcloud.runtime.iot.sql_ast import Context
from localcloud.runtime.iot.values import UNDEFINED

# RFC 1319's permutation of 0..255 built from the digits of pi.
_S = bytes.fromhex(
    "292e43c9a2d87c013d3654a1ecf0061362a705f3c0c7738c98932bd9bc4c82ca1e9b573cfdd4e01667426f188a17e512"
    "be4ec4d6da9ede49a0fbf58ebb2fee7aa968799115b2073f94c210890b225f21807f5d9a5a903227353ecce7bff79703"
    "ff1930b348a5b5d1d75e922aac56aac64fb838d296a47db676fc6be29c7404f1459d705964718720865bcf65e62da802"
    "1b6025adaeb0b9f61c46616934407e0f5547a323dd51af3ac35cf9cebac5ea262c530d6e85288409d3dfcdf441814d52"
    "6adc37c86cc1abfa24e17b080cbdb14a7888958be363e86de9cbd5fe3b001d39f2efb70e6658d0e4a67772f8eb754b0a"
    "314450b48fed1f1adb998d339f118314"
)


def md2_hex(data: bytes) -> str:
    padding = 16 - len(data) % 16
    data += bytes([padding]) * padding
    checksum, last = bytearray(16), 0
    for start in range(0, len(data), 16):
        for index in range(16):
            checksum[index] ^= _S[data[start + index] ^ last]
            last = checksum[index]
    data += bytes(checksum)
    state = bytearray(48)
    for start in range(0, len(data), 16):
        block = data[start : start + 16]
        state[16:32] = block
        state[32:48] = bytes(a ^ b for a, b in zip(state[0:16], block, strict=True))
        carry = 0
        for round_number in range(18):
            for index in range(48):
                state[index] ^= _S[carry]
                carry = state[index]
            carry = (carry + round_number) % 256
    return bytes(state[:16]).hex()


def _hashing(digest: Callable[[bytes], str]) -> Callable[[Context, Any], Any]:
    def impl(ctx: Context, value: Any) -> Any:
        text = to_string(value)
        return UNDEFINED if text is UNDEFINED else digest(text.encode("utf-8", "surrogatepass"))

    return impl


def _hashlib(name: str) -> Callable[[bytes], str]:
    return lambda data: hashlib.new(name, data).hexdigest()


FUNCTIONS = [
    Function("md2", _hashing(md2_hex), 1, 1),
    *(
        Function(name, _hashing(_hashlib(name)), 1, 1)
        for name in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
    ),
]
