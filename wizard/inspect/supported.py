"""The Linux distributions, versions and kernels VM Import supports: data, in one place.

Source: the VM Import/Export User Guide, "Requirements for resources that you import with VM
Import/Export", Linux/Unix table: https://docs.aws.amazon.com/vm-import/latest/userguide/prerequisites.html
(the current page as stored on 2026-12-02, in its English and machine-translated copies; the
newest rows, e.g. Amazon Linux 2023, CentOS 9, Debian 12.x and Fedora 37-39, come from the
latter). Rows the stored copies did not reach are not guessed: each distribution records up to
which version its rows were read (`read_up_to`); a newer version of it is "not checked", not
"unsupported". To update: edit LINUX from the current guide and change RETRIEVED.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "https://docs.aws.amazon.com/vm-import/latest/userguide/prerequisites.html"
RETRIEVED = "2026-12-02"


@dataclass(frozen=True)
class Row:
    versions: tuple[str, str]  # first and last version of the row, inclusive ("6.1", "6.8")
    kernels: tuple[str, ...]  # kernel version prefixes the guide lists ("2.6.32", "5.10"); () any


@dataclass(frozen=True)
class Distribution:
    name: str
    rows: tuple[Row, ...]
    read_up_to: str = ""  # the stored guide's rows stop here; later versions are not checked ("" all read)


def _r(first: str, last: str, *kernels: str) -> Row:
    return Row((first, last), kernels)


# os-release ID -> what the guide lists for it
LINUX: dict[str, Distribution] = {
    "amzn": Distribution(
        "Amazon Linux",
        (_r("2", "2", "4.14", "4.19", "5.4", "5.10"), _r("2023", "2023", "6.1")),
    ),
    "centos": Distribution(
        "CentOS",
        (
            _r("5.1", "5.11", "2.6.18"),
            _r("6.1", "6.8", "2.6.32"),
            _r("7.0", "7.9", "3.10.0"),
            _r("8.0", "8.2", "4.18.0"),
            _r("9", "9", "5.14.0"),
        ),
    ),
    "debian": Distribution(
        "Debian",
        (
            _r("6.0.0", "6.0.8", "2.6.32"),
            _r("7.0.0", "7.8.0", "3.2"),
            _r("10", "10", "4.19.0"),
            _r("11", "11", "5.10.0"),
            _r("12.2", "12.2", "6.1.0"),
            _r("12.4", "12.4", "6.1.0"),
        ),
    ),
    "fedora": Distribution(
        "Fedora",
        (
            _r("18", "18", "3.2.5"),
            _r("19", "19", "3.9.5"),
            _r("20", "20", "3.11.10"),
            _r("37", "37", "6.0.7"),
            _r("38", "38", "6.2.9"),
            _r("39", "39", "6.5.6"),
        ),
    ),
    "ol": Distribution(
        "Oracle Linux",
        (
            _r("5.10", "5.11"),  # Unbreakable Enterprise Kernel, el5uek suffixes
            _r("6.1", "6.10", "2.6.32", "2.6.39", "3.8.13", "4.1.12"),
            _r("7.0", "7.6", "3.10.0", "3.8.13", "4.1.12", "4.14.35", "4.15", "5.4.17"),
        ),
        read_up_to="7.6",
    ),
    "rhel": Distribution(
        "Red Hat Enterprise Linux",
        (_r("5", "5.99", "2.6.18"), _r("6", "6.99", "2.6.32"), _r("7", "7.99", "3.10.0"), _r("8.0", "8.6", "4.18.0")),
        read_up_to="8.6",
    ),
    "rocky": Distribution("Rocky Linux", (), read_up_to="0"),
    "sles": Distribution(
        "SUSE Linux Enterprise Server",
        (
            _r("11", "11.4", "2.6.32", "3.0"),
            _r("12", "12.5", "3.12", "4.4", "4.12"),
            _r("15", "15.3", "4.12", "5.3"),
        ),
        read_up_to="15.3",
    ),
    "ubuntu": Distribution(
        "Ubuntu",
        (
            _r("12.04", "12.04", "3.2"),
            _r("12.10", "12.10", "3.5"),
            _r("13.04", "13.04", "3.8"),
            _r("13.10", "13.10", "3.11"),
        ),
        read_up_to="13.10",
    ),
}
ALIASES = {"sled": "sles", "opensuse-leap": "", "centos-stream": "centos", "redhat": "rhel", "oracle": "ol"}


def version_key(version: str) -> tuple[int, ...]:
    """ "12.4" -> (12, 4); non-numeric parts end the key ("7.9.2009" -> (7, 9, 2009))."""
    key: list[int] = []
    for part in version.strip().split(".")[:6]:
        digits = ""
        for ch in part[:9]:
            if not ("0" <= ch <= "9"):  # ASCII digits only: "²".isdigit() is true, int("²") fails
                break
            digits += ch
        if not digits:
            break
        key.append(int(digits))
    return tuple(key)


def _within(version: str, row: Row) -> bool:
    v, lo, hi = version_key(version), version_key(row.versions[0]), version_key(row.versions[1])
    if not v:
        return False
    n = max(len(lo), len(hi))
    return lo <= v[:n] <= hi if len(v) >= n else lo[: len(v)] <= v <= hi[: len(v)]


@dataclass
class Verdict:
    status: str  # supported | unsupported-os | unsupported-version | not-checked
    distribution: str  # the guide's name, "" if not in it
    row: Row | None = None
    read_up_to: str = ""


def judge(os_id: str, version: str) -> Verdict:
    key = ALIASES.get(os_id, os_id)
    dist = LINUX.get(key)
    if dist is None:
        return Verdict("unsupported-os", "")
    for row in dist.rows:
        if _within(version, row):
            return Verdict("supported", dist.name, row)
    if dist.read_up_to and version_key(version) > version_key(dist.read_up_to):
        return Verdict("not-checked", dist.name, read_up_to=dist.read_up_to)
    return Verdict("unsupported-version", dist.name)


def kernel_listed(row: Row, kernel: str) -> bool:
    """Whether the kernel version ("5.10.0-26-amd64") starts with one the row lists."""
    if not row.kernels:
        return True
    k = version_key(kernel)
    return any(k[: len(version_key(p))] == version_key(p) for p in row.kernels)


# --- Windows ----------------------------------------------------------------------------------
# The same guide's Windows table. Its editions per version come from the guide's source as
# published in the awsdocs/vm-import-export-user-guide repository (doc_source/prerequisites.md,
# "Windows OS", read 2026-12-02), whose table ends at Windows Server 2019 and Windows 11; the
# current page adds Windows Server 2022 (its edition list was not in the stored copies, so any
# edition of it passes). Footnotes kept: client editions only in US English; Windows 11 needs
# UEFI; Nano Server is not supported. To update: edit WINDOWS_EDITIONS from the current guide.
WINDOWS_SOURCE_TABLE = "https://github.com/awsdocs/vm-import-export-user-guide/blob/main/doc_source/prerequisites.md"
WINDOWS_SOURCE = SOURCE
WINDOWS_RETRIEVED = "2026-12-02"
WINDOWS_VERSIONS = {  # every version, oldest first: what a range below spans
    "windows-server": ("2000", "2003", "2003 R2", "2008", "2008 R2", "2012", "2012 R2", "2016", "2019", "2022", "2025"),
    "windows-client": ("XP", "Vista", "7", "8", "8.1", "10", "11"),
}
WINDOWS: dict[str, tuple[str, str]] = {  # distribution -> first and last supported version
    "windows-server": ("2003", "2022"),
    "windows-client": ("7", "11"),
}
# (distribution, version) -> the editions the guide lists for it; () any edition
WINDOWS_EDITIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("windows-server", "2003"): ("Standard", "Datacenter", "Enterprise"),
    ("windows-server", "2003 R2"): ("Standard", "Datacenter", "Enterprise"),
    ("windows-server", "2008"): ("Standard", "Datacenter", "Enterprise"),
    ("windows-server", "2008 R2"): ("Standard", "Web Server", "Datacenter", "Enterprise"),
    ("windows-server", "2012"): ("Standard", "Datacenter"),
    ("windows-server", "2012 R2"): ("Standard", "Datacenter"),
    ("windows-server", "2016"): ("Standard", "Datacenter"),
    ("windows-server", "2019"): ("Standard", "Datacenter"),
    ("windows-server", "2022"): (),
    ("windows-client", "7"): ("Home", "Professional", "Enterprise", "Ultimate"),
    ("windows-client", "8"): ("Home", "Professional", "Enterprise"),
    ("windows-client", "8.1"): ("Professional", "Enterprise"),
    ("windows-client", "10"): ("Home", "Professional", "Enterprise", "Education"),
    ("windows-client", "11"): ("Home", "Professional", "Enterprise", "Education"),
}
# The registry's EditionID -> the guide's edition name ("N", "KN" and evaluation variants alike)
EDITION_IDS = {
    "core": "Home",
    "coren": "Home",
    "coresinglelanguage": "Home",
    "corecountryspecific": "Home",
    "homebasic": "Home",
    "homepremium": "Home",
    "professional": "Professional",
    "professionaln": "Professional",
    "professionalworkstation": "Professional",
    "professionaleducation": "Education",
    "enterprise": "Enterprise",
    "enterprisen": "Enterprise",
    "enterprises": "Enterprise",
    "education": "Education",
    "educationn": "Education",
    "ultimate": "Ultimate",
    "serverstandard": "Standard",
    "serverstandardeval": "Standard",
    "serverdatacenter": "Datacenter",
    "serverdatacentereval": "Datacenter",
    "serverenterprise": "Enterprise",
    "serverweb": "Web Server",
}
WINDOWS_CLIENT_LANGUAGES = {"0409"}  # InstallLanguage of the client editions VM Import takes: US English
WINDOWS_MIN_FREE = 6 * 1024**3  # bytes free on the system volume
WINDOWS_11_BUILD = 22000  # Windows 11 from this build on, whatever ProductName says (it needs UEFI)


def windows_edition(edition_id: str) -> str:
    """The guide's name of a registry EditionID ("ServerDatacenter" -> "Datacenter"); "" unknown."""
    return EDITION_IDS.get(edition_id.strip().lower(), "")


def edition_listed(distribution: str, version: str, edition: str) -> bool | None:
    """Whether the guide lists `edition` (the guide's name) for that version; None if it cannot tell."""
    editions = WINDOWS_EDITIONS.get((distribution, version))
    if editions is None or not edition:
        return None
    return not editions or edition in editions


def judge_windows(distribution: str, version: str) -> str:
    """ "supported"; "unsupported" (older than the guide's first version); "not-listed" (newer
    than its last: the guide may list it by now); "unknown" (a version this table does not know)."""
    known, listed = WINDOWS_VERSIONS.get(distribution, ()), WINDOWS.get(distribution)
    if listed is None or version not in known:
        return "unknown"
    at, first, last = known.index(version), known.index(listed[0]), known.index(listed[1])
    return "supported" if first <= at <= last else "unsupported" if at < first else "not-listed"
