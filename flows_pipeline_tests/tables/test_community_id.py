"""network.community_id agrees with corelight's reference implementation (`communityid`)."""

import communityid
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from flows_pipeline.tables.community_id import community_ids

REFERENCE = communityid.CommunityID()

# The community-id-spec README's and pycommunityid's published examples: (src, dst, proto, sport
# or ICMP type, dport or ICMP code) -> Community ID (seed 0, base64)
PUBLISHED = [
    (("128.232.110.120", "66.35.250.204", 6, 34855, 80), "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (("66.35.250.204", "128.232.110.120", 6, 80, 34855), "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (("192.168.0.89", "192.168.0.1", 1, 8, 0), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (("192.168.0.1", "192.168.0.89", 1, 0, 0), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (("fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 58, 135, 0), "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
]


def ours(flows: list[tuple]) -> list[str | None]:
    src = pa.array([f[0] for f in flows])
    dst = pa.array([f[1] for f in flows])
    proto = pa.array([f[2] for f in flows], pa.int32())

    def column(index: int, protocols: tuple[int, ...], kind) -> pa.Array:
        return pa.array([f[index] if f[2] in protocols else None for f in flows], kind)

    ports = (6, 17, 132)
    icmp = [column(i, (number,), pa.int16()) for number in (1, 58) for i in (3, 4)]
    return community_ids(src, dst, proto, column(3, ports, pa.int32()), column(4, ports, pa.int32()), icmp).to_pylist()


def reference(flow: tuple) -> str:
    src, dst, proto, a, b = flow
    if proto in (1, 6, 17, 58, 132):
        return REFERENCE.calc(communityid.FlowTuple(proto, src, dst, a, b))
    return REFERENCE.calc(communityid.FlowTuple(proto, src, dst))


def test_the_published_examples():
    assert ours([flow for flow, _ in PUBLISHED]) == [expected for _, expected in PUBLISHED]
    assert [reference(flow) for flow, _ in PUBLISHED] == [expected for _, expected in PUBLISHED]


addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.ip_addresses(v=4)),
    st.tuples(st.ip_addresses(v=6), st.ip_addresses(v=6)).filter(
        lambda pair: all(a.ipv4_mapped is None for a in pair)  # canonical: the table holds those as IPv4
    ),
    st.ip_addresses(v=4).map(lambda a: (a, a)),
)
flows = st.builds(
    lambda pair, proto, a, b: (str(pair[0]), str(pair[1]), proto, a, b),
    addresses,
    st.sampled_from([1, 6, 17, 47, 50, 58, 132]),
    st.one_of(st.integers(0, 255), st.sampled_from([0, 8, 13, 128, 129, 135, 136])),
    st.integers(0, 255),
).map(lambda f: f if f[2] in (1, 58) else (f[0], f[1], f[2], f[3] * 257, f[4] * 3))


@settings(max_examples=300, deadline=None)
@given(st.lists(flows, min_size=1, max_size=50))
def test_every_flow_hashes_as_the_reference_implementation(batch):
    assert ours(batch) == [reference(flow) for flow in batch]


def test_a_ported_protocol_without_ports_has_no_community_id():
    assert ours([("10.0.0.1", "10.0.0.2", 6, None, None), ("10.0.0.1", "10.0.0.2", 47, None, None)])[0] is None
