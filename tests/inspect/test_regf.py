"""The registry hive reader: on hives written by hivexregedit, and on hives laid out here cell by
cell for the structures hivex does not write (li and ri subkey lists, lf hints, big data)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from wizard.inspect.reader import FileReader
from wizard.inspect.regf import Hive, RegfError, lh_hash

from .helpers import BytesReader, CountingReader
from .windows_guests import hive, require_windows_tools

BLOB = bytes(range(256)) * 160  # 40 KiB: past the 16344 bytes of one data cell's usual limit


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_windows_tools()
    keys = {
        "Microsoft\\Windows NT\\CurrentVersion": {
            "ProductName": 'Windows "Server" 2019 \\ Datacenter',
            "CurrentBuild": "17763",
            "InstallDate": 0x5F3E2A10,
            "Multi": ["one", "two", "three"],
            "Blob": BLOB,
            "Größe": "ascii only: hivexregedit reads .reg text as Latin-1",
        },
        **{f"Microsoft\\Many\\Key{i:04d}": {} for i in range(1200)},
        "Microsoft\\Many\\Ärger": {"X": 1},
    }
    return hive(tmp_path_factory.mktemp("regf") / "SOFTWARE", keys)


def test_values_of_each_type(written: Path) -> None:
    h = Hive(FileReader(written))
    assert not h.dirty and (h.major, h.minor) == (1, 3)
    values = h.values(h.key("Microsoft\\Windows NT\\CurrentVersion"))  # type: ignore[arg-type]
    assert values == {
        "ProductName": 'Windows "Server" 2019 \\ Datacenter',
        "CurrentBuild": "17763",
        "InstallDate": 0x5F3E2A10,
        "Multi": ["one", "two", "three"],
        "Blob": BLOB,
        "Größe": "ascii only: hivexregedit reads .reg text as Latin-1",
    }


def test_keys_and_values_are_found_whatever_their_case(written: Path) -> None:
    h = Hive(FileReader(written))
    assert h.value("MICROSOFT\\windows nt\\CurrentVERSION", "productname") == 'Windows "Server" 2019 \\ Datacenter'
    assert h.value("Microsoft/Windows NT/CurrentVersion", "CurrentBuild") == "17763"
    assert h.key("Microsoft\\Windows NT\\Nope") is None and h.value("Nope", "X") is None
    assert h.value("Microsoft\\Windows NT\\CurrentVersion", "Nope") is None
    assert h.value("microsoft\\many\\KEY1199", "X") is None and h.key("microsoft\\many\\KEY1199") is not None
    assert h.value("Microsoft\\Many\\ärger", "x") == 1  # not ASCII: the list is scanned, not hashed


def test_a_lookup_among_1200_subkeys_reads_a_few_cells(written: Path) -> None:
    reader = CountingReader(FileReader(written))
    h = Hive(reader)
    assert h.key("Microsoft\\Many\\Key0777") is not None
    assert h.visits <= 8  # root, Microsoft, its list, Many, its list, Key0777: the hashes pick the cells
    assert len(reader.reads) <= 6


# --- hives laid out cell by cell ------------------------------------------------------------


class Layout:
    """Cells placed one after the other in one hive bin; offsets known before their content."""

    def __init__(self) -> None:
        self.cells: list[tuple[int, bytes]] = []
        self.end = 0x20

    def add(self, size: int) -> int:
        at = self.end
        self.end += -(-(size + 4) // 8) * 8
        return at

    def put(self, at: int, payload: bytes) -> None:
        self.cells.append((at, payload))

    def hive(self, root: int, minor: int = 5) -> bytes:
        bins = -(-(self.end + 8) // 4096) * 4096
        data = bytearray(bins)
        data[0:4] = b"hbin"
        struct.pack_into("<II", data, 4, 0, bins)
        for at, payload in self.cells:
            size = -(-(len(payload) + 4) // 8) * 8
            struct.pack_into("<i", data, at, -size)
            data[at + 4 : at + 4 + len(payload)] = payload
        struct.pack_into("<i", data, self.end, bins - self.end)
        base = bytearray(4096)
        base[0:4] = b"regf"
        struct.pack_into("<IIQIIIIIII", base, 4, 1, 1, 0, 1, minor, 0, 1, root, bins, 1)
        return bytes(base) + bytes(data)


def nk(
    name: str, subkeys: int = 0, subkey_list: int = 0xFFFFFFFF, values: int = 0, value_list: int = 0xFFFFFFFF
) -> bytes:
    raw = bytearray(76)
    raw[0:2] = b"nk"
    struct.pack_into("<H", raw, 2, 0x20)
    struct.pack_into("<IIIIIII", raw, 20, subkeys, 0, subkey_list, 0xFFFFFFFF, values, value_list, 0xFFFFFFFF)
    struct.pack_into("<H", raw, 72, len(name))
    return bytes(raw) + name.encode("latin-1")


def vk(name: str, size: int, offset: int, kind: int) -> bytes:
    return b"vk" + struct.pack("<HIIIHH", len(name), size, offset, kind, 1, 0) + name.encode("latin-1")


def crafted(minor: int = 5) -> bytes:
    """ROOT -> ri [li (Alpha, Beta), lf (Gamma)]; Gamma has a 40 KiB value in a db cell's three
    segments and a REG_EXPAND_SZ; Beta a DWORD kept in the value's offset field."""
    lay = Layout()
    root, ri, li, lf = lay.add(80), lay.add(12), lay.add(12), lay.add(12)
    alpha, beta, gamma = lay.add(81), lay.add(80), lay.add(81)
    beta_values, beta_vk = lay.add(4), lay.add(24)
    gamma_values, big_vk, text_vk, text = lay.add(8), lay.add(23), lay.add(24), lay.add(64)
    db, segments = lay.add(12), lay.add(12)
    parts = [BLOB[i : i + 16344] for i in range(0, len(BLOB), 16344)]
    cells = [lay.add(len(p)) for p in parts]
    lay.put(root, nk("ROOT", 3, ri))
    lay.put(ri, b"ri" + struct.pack("<HII", 2, li, lf))
    lay.put(li, b"li" + struct.pack("<HII", 2, alpha, beta))
    lay.put(lf, b"lf" + struct.pack("<HI", 1, gamma) + b"Gamm")
    lay.put(alpha, nk("Alpha"))
    lay.put(beta, nk("Beta", values=1, value_list=beta_values))
    lay.put(beta_values, struct.pack("<I", beta_vk))
    lay.put(beta_vk, vk("Start", 0x80000004, 3, 4))
    lay.put(gamma, nk("Gamma", values=2, value_list=gamma_values))
    lay.put(gamma_values, struct.pack("<II", big_vk, text_vk))
    lay.put(big_vk, vk("Big", len(BLOB), db, 3))
    lay.put(text_vk, vk("Path", 40, text, 2))
    lay.put(text, "%SystemRoot%\\x".ljust(20, "\0").encode("utf-16-le"))
    lay.put(db, b"db" + struct.pack("<HII", len(parts), segments, 0))
    lay.put(segments, struct.pack(f"<{len(cells)}I", *cells))
    for at, part in zip(cells, parts, strict=True):
        lay.put(at, part)
    return lay.hive(root, minor)


def test_index_root_leaf_lists_and_big_data() -> None:
    h = Hive(BytesReader(crafted()))
    assert [h.key(name).name for name in ("alpha", "BETA", "gamma")] == ["Alpha", "Beta", "Gamma"]  # type: ignore[union-attr]
    assert h.key("Delta") is None and h.key("Gam") is None
    assert h.value("Beta", "Start") == 3
    assert h.values(h.key("Gamma")) == {"Big": BLOB, "Path": "%SystemRoot%\\x"}  # type: ignore[arg-type]


def test_big_data_cells_are_not_read_in_older_hives() -> None:
    with pytest.raises(RegfError, match="longer than its cell"):
        Hive(BytesReader(crafted(minor=3))).value("Gamma", "Big")


def test_lh_hash_is_the_hash_windows_keeps() -> None:
    assert lh_hash("A") == ord("A") and lh_hash("ab") == ord("A") * 37 + ord("B")


@pytest.mark.parametrize(
    ("patch_at", "patch", "error"),
    [
        (0, b"regX", "no regf base block"),
        (20, struct.pack("<I", 2), "hive version"),
        (36, struct.pack("<I", 0x21), "outside the hive bins"),  # the root's offset, unaligned
        (4096 + 0x20, struct.pack("<i", 80), "is free"),  # the root's cell size made positive
        (4096 + 0x24, b"nX", "not a key node"),
    ],
)
def test_damage_is_the_readers_own_error(patch_at: int, patch: bytes, error: str) -> None:
    data = bytearray(crafted())
    data[patch_at : patch_at + len(patch)] = patch
    with pytest.raises(RegfError, match=error):
        Hive(BytesReader(bytes(data))).key("Gamma")
