"""Property tests of lamina's parsers of untrusted input: the header readers on mutated
real images, label files, `lamina run` configs, flags policies and `--where` conditions
(see fuzz_targets.py for what each must hold). Hypothesis shrinks a failure to a small
input and prints it.

Bounded form: `EXAMPLES` per target; full form (LAMINA_TORTURE=full) many more. The
time-boxed, coverage-guided run is fuzz.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.reliability.conftest import FULL, record, seed_for
from tests.reliability.fuzz_targets import TARGETS, Target, check, mutate

EXAMPLES = 3000 if FULL else 120

EDITS = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 1 << 20), st.integers(0, 0xFFFFFFFF)),
    min_size=1,
    max_size=6,
)


@cache
def _seeds(name: str) -> tuple[bytes, ...]:
    return tuple(TARGETS[name].seeds().values())


def inputs(name: str) -> st.SearchStrategy[bytes]:
    """A real seed file with a few edits, or (a quarter of the time) any bytes at all; for
    a text target, also any unicode text."""
    mutated = st.builds(mutate, st.sampled_from(_seeds(name)), EDITS)
    if TARGETS[name].text:
        any_text = st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))
        return st.one_of(mutated, mutated, any_text, st.binary(max_size=4096))
    return st.one_of(mutated, mutated, mutated, st.binary(max_size=4096))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="lamina-props-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _property(target: Target, scratch: Path) -> int:
    tried = 0

    @seed(seed_for(f"properties/{target.name}"))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(inputs(target.name))
    def holds(data: bytes) -> None:
        nonlocal tried
        tried += 1
        check(target, data, scratch)

    holds()
    return tried


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_parsers_of_untrusted_input_hold_their_promises(name: str, scratch: Path) -> None:
    tried = _property(TARGETS[name], scratch)
    record("property", target=name, examples=tried, seed=seed_for(f"properties/{name}"))
