"""How the federation config reads one field: present, of its kind and in range, or a ConfigError naming it.

Shared by ``config`` (the federation's fields) and ``client_config`` (each ``clients[i]`` entry).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from fl_runtime.errors import ConfigError

ACCOUNT = re.compile(r"^\d{12}$")


def arn_partition(region: str) -> str:
    """The ARN partition of a region: ARNs built here must match what AWS and cdk-nag report there."""
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def require(raw: Mapping, field: str, prefix: str = ""):
    if field not in raw or raw[field] in (None, ""):
        raise ConfigError(f"{prefix}{field}: missing")
    return raw[field]


def string(raw: Mapping, field: str, pattern: re.Pattern, what: str, prefix: str = "") -> str:
    value = require(raw, field, prefix)
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(f"{prefix}{field}: {value!r} is not {what}")
    return value


def whole_number(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{field}: {value!r} is not a whole number from {low} to {high}")
    return value


def integer(raw: Mapping, field: str, low: int, high: int) -> int:
    return whole_number(require(raw, field), field, low, high)


def cidr(raw: Mapping, field: str, prefix: str = "") -> ipaddress.IPv4Network:
    value = require(raw, field, prefix)
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except (ValueError, TypeError):
        raise ConfigError(f"{prefix}{field}: {value!r} is not an IPv4 CIDR block such as 10.1.0.0/16") from None
    if not network.is_private or not 16 <= network.prefixlen <= 24:
        raise ConfigError(f"{prefix}{field}: {value} must be a private range with a prefix from /16 to /24")
    return network
