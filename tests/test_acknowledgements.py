"""The acknowledgement rule (wizard.preflight.acknowledgements), pure: which findings need one, whether
an acknowledgement covers the current findings, and the set a form posts back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wizard.preflight import acknowledgements as ack
from wizard.requests.steps import Placed

codes = st.sampled_from(
    ["static-network", "no-boot-config", "gpt-backup-missing", "windows-hiberfil", "x"]
) | st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True)
disks = st.none() | st.integers(1, 2**63 - 1)


@st.composite
def findings(draw: st.DrawFn, severity: st.SearchStrategy[str] | None = None) -> Placed:
    disk = draw(disks)
    return Placed(
        "upload",
        "disk-0" if disk else "role_name",
        "DiskContainers[0] (image)" if disk else "RoleName",
        draw(st.text(max_size=40)),
        severity=draw(st.sampled_from(["error", "warning", "info"]) if severity is None else severity),
        code=draw(codes | st.just("")),
        disk=disk,
    )


some = st.lists(findings(), max_size=12)


def warning(code: str, disk: int | None = 1, message: str = "m") -> Placed:
    return Placed("upload", "disk-0", "DiskContainers[0] (image)", message, severity="warning", code=code, disk=disk)


def test_only_warnings_need_an_acknowledgement_whatever_their_code():
    found = [
        Placed("upload", "disk-0", "p", "broken", severity="error", code="no-partitions", disk=1),
        warning("static-network"),
        Placed("upload", "disk-0", "p", "fine", severity="info", code="os-supported", disk=1),
        warning("a-code-added-later", disk=2),
    ]
    assert [f.code for f in ack.needing(found)] == ["static-network", "a-code-added-later"]
    assert ack.keys(found) == {(1, "static-network"), (2, "a-code-added-later")}
    assert not ack.covers(set(), found) and ack.covers({(1, "static-network"), (2, "a-code-added-later")}, found)
    # The same code on another disk is another warning; on the same disk, the same one.
    assert [f.disk for f in ack.uncovered([warning("static-network", disk=3)], {(1, "static-network")})] == [3]
    assert ack.uncovered([warning("static-network", message="other text")], {(1, "static-network")}) == []


def test_a_warning_without_a_code_is_told_apart_by_where_and_what():
    a = Placed("details", "role_name", "RoleName", "trust lacks the external id", severity="warning")
    b = Placed("details", "role_name", "RoleName", "may not use the KMS key", severity="warning")
    assert ack.key_of(a) != ack.key_of(b) and ack.key_of(a) == ack.key_of(a)
    code = ack.account_code("RoleName", "trust lacks the external id")
    assert code.startswith("account-rolename-") and code == ack.account_code("RoleName", "trust lacks the external id")


@given(some)
def test_an_acknowledgement_of_the_current_warnings_covers_them(found):
    assert ack.covers(ack.keys(found), found)
    assert ack.uncovered(found, ack.keys(found)) == []


@given(some, st.lists(findings(severity=st.sampled_from(["error", "info"])), max_size=4), st.data())
def test_errors_infos_and_warnings_gone_never_ask_again(found, others, data):
    acknowledged = ack.keys(found)
    kept = data.draw(st.lists(st.sampled_from(found), max_size=len(found))) if found else []
    assert ack.covers(acknowledged, kept + others)


@given(some, findings(severity=st.just("warning")))
def test_a_new_warning_is_not_covered(found, new):
    acknowledged = ack.keys(found)
    if ack.key_of(new) in acknowledged:
        assert ack.covers(acknowledged, [*found, new])
    else:
        assert ack.uncovered([*found, new], acknowledged) == [new]


@given(some, st.sets(st.tuples(disks, codes), max_size=6))
def test_uncovered_is_exactly_the_warnings_outside_the_set(found, acknowledged):
    left = ack.uncovered(found, acknowledged)
    assert left == [f for f in found if f.severity == "warning" and ack.key_of(f) not in acknowledged]
    assert ack.covers(acknowledged | ack.keys(left), found)


@given(st.frozensets(st.tuples(disks, codes.filter(bool)), max_size=10))
def test_the_posted_set_and_the_stored_one_read_back_the_same(keys):
    assert ack.parse_token(ack.token(keys)) == keys
    assert ack.from_stored(ack.as_stored(keys)) == keys
    assert ack.token(keys) == ack.token(set(reversed(sorted(keys, key=str))))  # one text per set


@given(st.text(max_size=300) | st.from_regex(r"\[\[(null|-?[0-9]{1,25}|true|\"x\"),\"[^\"]{0,5}\"\](,\[1\])?\]"))
def test_any_posted_text_is_a_set_of_valid_keys_or_none(text):
    parsed = ack.parse_token(text)
    assert parsed is None or all(
        (d is None or (type(d) is int and 0 < d < 2**63)) and isinstance(c, str) and c and "\x00" not in c
        for d, c in parsed
    )


def test_absurd_posted_sets_are_refused():
    for text in ["", "null", "{}", '[[1, "a", 3]]', '[[true, "a"]]', '[[0, "a"]]', f'[[{2**63}, "a"]]', '[[1, ""]]',
                 '[[1, "\\ud800"]]', '[[1, "a\\u0000"]]', "[" * 5000, '[[1, "' + "x" * 201 + '"]]',
                 "[" + ",".join(['[1,"a"]'] * 10_000) + "]"]:  # fmt: skip
        assert ack.parse_token(text) is None, text
    assert ack.parse_token("[]") == frozenset()
    assert ack.from_stored([{"disk": "1", "code": "a"}, {"code": "b", "disk": None}, "junk", None]) == {(None, "b")}
    assert ack.from_stored("not a list") == frozenset()


@given(some, st.lists(codes, max_size=5))
def test_codes_acknowledge_their_warnings_and_unknown_ones_are_named(found, wanted):
    keys, unknown = ack.from_codes(found, wanted)
    present = {c for _, c in ack.keys(found)}
    assert keys == {k for k in ack.keys(found) if k[1] in wanted}
    assert unknown == sorted(set(wanted) - present)
    if present <= set(wanted):
        assert ack.covers(keys, found)
