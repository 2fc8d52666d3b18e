"""Facts of the network protocols that flow records carry, written once.

Sources: IANA "Assigned Internet Protocol Numbers" (names as in ECS `network.transport`, which
asks for the IANA keyword in lower case); TCP header flags (RFC 9293, with CWR/ECE of RFC 3168)
in the order nfdump prints them; the longest textual address (RFC 4291 section 2.2, form 3).
"""

from __future__ import annotations

# IANA protocol number -> ECS `network.transport` name, for the protocols flows commonly carry;
# any other number is written as its decimal text.
IANA_TRANSPORT_NAMES: dict[int, str] = {
    1: "icmp",
    2: "igmp",
    6: "tcp",
    17: "udp",
    47: "gre",
    50: "esp",
    58: "ipv6-icmp",
    132: "sctp",
}
# name (as collectors write it, lower case) -> IANA number; GoFlow2 and others say "icmpv6"
IANA_NUMBERS: dict[str, int] = {name: number for number, name in IANA_TRANSPORT_NAMES.items()} | {"icmpv6": 58}

# Protocols whose flows have ports (TCP, UDP, SCTP); for the others a port field means nothing.
PORTED_PROTOCOLS = frozenset({6, 17, 132})

# TCP flag letters in the fixed positions nfdump prints them ("...AP.SF"), highest bit first.
TCP_FLAG_LETTERS = "CEUAPRSF"
TCP_FLAG_BITS: dict[str, int] = {letter: 1 << (7 - i) for i, letter in enumerate(TCP_FLAG_LETTERS)}

# "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255": an IPv6 address with an embedded IPv4 tail.
MAX_ADDRESS_CHARS = 45
# A zone id after "%" (fe80::1%eth0) names an interface of the host that wrote it: Linux's are
# at most 15 characters (IFNAMSIZ 16 with its NUL).
MAX_ZONE_CHARS = 15
