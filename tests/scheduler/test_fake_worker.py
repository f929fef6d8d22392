"""The fake worker is as strict as the real one (services/radixserve/worker/batch.py), no
stricter: a request's first step (sampling set) starts its row over, so a row can be reused
unreleased."""

from __future__ import annotations

import pytest

from radixserve.common.types import ForwardMode, ReqInput, SamplingParams, StepInput
from tests.scheduler.conftest import make_info
from tests.scheduler.fake_worker import FakeWorker

SP = SamplingParams()


def extend(step_id, row, ids, slots, release=(), first=True):
    ri = ReqInput(
        row=row,
        new_slots=slots,
        token_ids=ids,
        prefix_slots=[] if first else None,
        sampling=SP if first else None,
    )
    return StepInput(step_id, ForwardMode.EXTEND, [ri], release_rows=list(release))


def test_a_first_step_restarts_a_row_without_a_release():
    w = FakeWorker(make_info())
    a = w.run(extend(0, 0, [1, 2], [1, 2]))
    b = w.run(extend(1, 0, [1, 2], [3, 4]))  # a new request on row 0, never released
    assert a.token_ids == b.token_ids  # the new request saw only its own tokens


def test_protocol_violations_are_refused():
    w = FakeWorker(make_info())
    with pytest.raises(AssertionError, match="no request"):
        w.run(StepInput(0, ForwardMode.DECODE, [ReqInput(row=3, new_slots=[5])]))
    with pytest.raises(AssertionError, match="released in a step that uses it"):
        w.run(extend(1, 0, [1], [1], release=[0]))
    with pytest.raises(AssertionError, match="prefix_slots without sampling"):
        w.run(StepInput(2, ForwardMode.EXTEND, [ReqInput(0, [2], [1], prefix_slots=[1])]))
    with pytest.raises(AssertionError, match="padding slot"):
        w.run(extend(3, 1, [1], [0]))
    with pytest.raises(AssertionError, match="refuses empty steps"):
        w.run(StepInput(4, ForwardMode.DECODE, []))
