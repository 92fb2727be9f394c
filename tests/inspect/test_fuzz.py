"""The seeded, bounded fuzz of the inspector: mutated corpus images and hostile synthetic OVAs.

Each case runs in a child process under a watchdog (tests/inspect/fuzzing.py); none may hang,
raise, run out of memory, be caught only by the inspector's last-resort net, go over the peak
memory bound or the read budget, or give a report that is not JSON with 64-bit numbers.
A longer run of the same fuzzer: bench/fuzz-inspect --seconds 600.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from .fuzzing import IMAGES, Corpus, Limits, Result, describe, make_case, run_cases

SEED = 20250
CASES = 300
SYNTHETIC = ["capacity", "disks", "nested", "OVF of", "descriptor of", "tar members", "pax", "GNU", "base-256"]


@pytest.fixture(scope="module")
def fuzz_results(corpus: Path) -> list[Result]:
    return list(run_cases(corpus, SEED, range(CASES), Limits(timeout=5)))


def test_fuzz_cases_all_pass(fuzz_results: list[Result]) -> None:
    assert len(fuzz_results) == CASES
    failed = [r for r in fuzz_results if r.kind != "ok"]
    kinds = Counter(r.kind for r in failed)
    assert not failed, f"{dict(kinds)}\n" + "\n".join(describe(r) for r in failed[:10])


def test_fuzz_cases_stay_within_their_limits(fuzz_results: list[Result]) -> None:
    limits = Limits()
    assert max(r.peak_memory for r in fuzz_results) <= limits.peak_memory
    assert max(r.reads for r in fuzz_results) <= limits.reads
    assert max(r.read_bytes for r in fuzz_results) <= limits.read_bytes
    assert max(r.largest_read for r in fuzz_results) <= limits.largest_read
    assert all(r.report is not None and r.report["findings"] is not None for r in fuzz_results)


def test_the_cases_cover_every_image_and_every_kind_of_hostile_ova(corpus: Path) -> None:
    """The fuzz is not degenerate: its cases reach every corpus image, each mutation and each
    synthetic OVA, and they are the same for the same seed."""
    c = Corpus(corpus)
    descriptions = [make_case(c, SEED, i).description for i in range(CASES)]
    assert descriptions[:20] == [make_case(c, SEED, i).description for i in range(20)]
    sources = {d.split(":")[0] for d in descriptions}
    assert sources >= {*IMAGES, "OVA"}
    for what in ["flips", "ints", "checksums fixed", "cut at", "extended to", *SYNTHETIC]:
        assert any(what in d for d in descriptions), what
