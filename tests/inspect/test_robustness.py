"""Whatever bytes an upload holds, the inspection returns a report and never raises."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wizard.inspect import inspect_image

from .helpers import BytesReader

MAGICS = [b"", b"KDMV", b"COWD", b"# Disk DescriptorFile\n", b"vhdxfile", b"conectix", b"QFI\xfb", b"\x1f\x8b\x08"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MAGICS), st.binary(max_size=4096), st.sampled_from([0, 512, 70_000]))
def test_random_bytes_after_a_magic(magic: bytes, body: bytes, pad: int) -> None:
    report = inspect_image(BytesReader(magic + body + bytes(pad)), "VMDK")
    assert report.format in ("VMDK", "VHD", "VHDX", "QCOW2", "RAW", "UNKNOWN", "OVA", "ISO")
    report.to_dict()


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=512, max_size=512), st.binary(max_size=2048))
def test_random_tar_and_vhd_footers(header: bytes, rest: bytes) -> None:
    tar = bytearray(header)
    tar[257:262] = b"ustar"
    inspect_image(BytesReader(bytes(tar) + rest))
    footer = bytearray(header)
    footer[:8] = b"conectix"
    inspect_image(BytesReader(rest + bytes(footer)))
