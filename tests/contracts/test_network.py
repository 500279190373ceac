"""Exchange addresses as the config writes them: IP literals with a port, one-line errors."""

from __future__ import annotations

import pytest

from contracts.network import Endpoint, parse_endpoint


@pytest.mark.parametrize(
    "text, host, port, multicast",
    [
        ("10.0.1.20:31001", "10.0.1.20", 31001, False),
        ("239.192.0.1:1", "239.192.0.1", 1, True),
        ("[fd00::20]:65535", "fd00::20", 65535, False),
        ("[FF15::1]:31001", "ff15::1", 31001, True),
    ],
)
def test_addresses_parse(text, host, port, multicast):
    ep = parse_endpoint(text)
    assert ep == Endpoint(host, port) and ep.multicast is multicast
    assert parse_endpoint(str(ep)) == ep


@pytest.mark.parametrize(
    "text, says",
    [
        ("10.0.1.20", "has no port"),
        (":31001", "has no port"),
        ("10.0.1.20:", "the port must be a number"),
        ("10.0.1.20:0", "the port must be a number from 1 to 65535"),
        ("10.0.1.20:65536", "from 1 to 65535"),
        ("10.0.1.20:http", "the port must be a number"),
        ("exchange.example:31001", "host names are not allowed"),
        ("10.0.1:31001", "is not an IP address"),
        ("fd00::20:31001", "write an IPv6 address in brackets"),
        ("0.0.0.0:31001", "the unspecified address is not a peer"),
        ("[::]:31001", "the unspecified address"),
        ("", "is not an address"),
        (31001, "is not an address"),
    ],
)
def test_bad_addresses_say_what_is_wrong_in_one_line(text, says):
    with pytest.raises(ValueError, match=says) as info:
        parse_endpoint(text)
    assert "\n" not in str(info.value)
