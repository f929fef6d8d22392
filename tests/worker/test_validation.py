"""ModelRunner.step rejects contract violations with a ValueError that names the problem."""

from __future__ import annotations

import pytest

from radixserve.common.types import ForwardMode, ReqInput, StepInput
from tests.worker.helpers import GREEDY, Driver

E, D = ForwardMode.EXTEND, ForwardMode.DECODE


def _step(runner, mode, *reqs, release=()):
    return runner.step(StepInput(0, mode, list(reqs), list(release)))


@pytest.mark.parametrize(
    ("mode", "req", "message"),
    [
        (E, ReqInput(-1, [1], [5]), "row out of range"),
        (E, ReqInput(16, [1], [5]), "row out of range"),
        (E, ReqInput(0, [0], [5]), "slot 0 out of range"),
        (E, ReqInput(0, [4096], [5]), "slot 4096 out of range"),
        (E, ReqInput(0, [1], [5], prefix_slots=[0]), "slot 0 out of range"),
        (E, ReqInput(0, list(range(1, 258)), [5] * 257), "context overflow"),
        (E, ReqInput(0, [1, 2], [5]), "1 token_ids but 2 new_slots"),
        (E, ReqInput(0, [], []), "new_slots is empty"),
        (E, ReqInput(0, [1], [256]), "token id out of range"),
        (E, ReqInput(0, [1]), "token_ids missing in an EXTEND step"),
        (D, ReqInput(0, [1], [5]), "token_ids given in a DECODE step"),
        (D, ReqInput(11, [1]), "decode on a row with no request"),
    ],
)
def test_rejects(tiny_runner, mode, req, message):
    with pytest.raises(ValueError, match=message):
        _step(tiny_runner, mode, req)
    assert tiny_runner.num_live_rows == 0


def test_rejects_duplicate_rows(tiny_runner):
    with pytest.raises(ValueError, match="row appears twice"):
        _step(tiny_runner, E, ReqInput(0, [1], [5]), ReqInput(0, [2], [6]))


def test_release_only_step_and_reset(tiny_runner):
    _step(tiny_runner, E, ReqInput(0, [1], [5], None, GREEDY), ReqInput(1, [2], [6], None, GREEDY))
    assert tiny_runner.num_live_rows == 2
    out = _step(tiny_runner, D, release=[0])
    assert out.token_ids == [] and tiny_runner.num_live_rows == 1
    tiny_runner.reset()
    assert tiny_runner.num_live_rows == 0
    with pytest.raises(ValueError, match="decode on a row with no request"):
        _step(tiny_runner, D, ReqInput(1, [3]))


def test_live_row_rules(tiny_runner):
    drv = Driver(tiny_runner)
    drv.step(E, [ReqInput(2, drv.slots(3), [1, 2, 3], None, GREEDY, sample=False)])
    with pytest.raises(ValueError, match="nothing was sampled"):
        drv.step(D, [ReqInput(2, drv.slots(1))])
    with pytest.raises(ValueError, match="prefix_slots without sampling"):
        drv.step(E, [ReqInput(2, drv.slots(1), [4], prefix_slots=[1])])
    with pytest.raises(ValueError, match="a decode appends exactly one slot"):
        drv.step(ForwardMode.MIXED, [ReqInput(2, drv.slots(2))])
    tiny_runner.release([2])


def test_rejected_step_changes_nothing(tiny_runner):
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    expected, _ = Driver(tiny_runner, first_slot=500).generate([prompt], 6, rows=[1])
    drv = Driver(tiny_runner)
    got = [drv.step(E, [ReqInput(1, drv.slots(8), prompt, None, GREEDY)]).token_ids[0]]
    for _ in range(5):
        with pytest.raises(ValueError):  # the valid request 1 must not advance
            drv.step(D, [ReqInput(1, drv.slots(1)), ReqInput(5, [0])])
        got.append(drv.step(D, [ReqInput(1, drv.slots(1))]).token_ids[0])
    tiny_runner.release([1])
    assert got == expected[0]


def test_sampling_starts_a_live_row_over(tiny_runner):
    """A request carrying sampling owns its row afresh, even if the row was never released."""
    prompt = [8, 6, 7, 5, 3, 0, 9]
    expected, _ = Driver(tiny_runner, first_slot=700).generate([prompt], 5, rows=[4])
    drv = Driver(tiny_runner)
    drv.step(E, [ReqInput(4, drv.slots(3), [1, 2, 3], None, GREEDY)])  # left live on purpose
    got, _ = drv.generate([prompt], 5, rows=[4])
    assert got == expected


def test_decode_steps_on_live_rows_name_their_problem(tiny_runner):
    """Plain decodes of live rows take a one-pass check; a step it does not accept still gets
    the general checks and their messages, and changes nothing."""
    drv = Driver(tiny_runner, first_slot=900)
    drv.step(E, [ReqInput(r, drv.slots(2), [5, 6], None, GREEDY) for r in (3, 7)])
    for bad, message in [
        ([ReqInput(3, drv.slots(1)), ReqInput(3, drv.slots(1))], "row appears twice"),
        ([ReqInput(3, drv.slots(1)), ReqInput(7, [4096])], "slot 4096 out of range"),
        ([ReqInput(3, drv.slots(1)), ReqInput(7, [0])], "slot 0 out of range"),
        ([ReqInput(3, drv.slots(2))], "a decode appends exactly one slot"),
        ([ReqInput(3, drv.slots(1)), ReqInput(12, drv.slots(1))], "decode on a row with no"),
    ]:
        with pytest.raises(ValueError, match=message):
            drv.step(D, bad)
    assert [tiny_runner.rows.get(r).seq_len for r in (3, 7)] == [2, 2]
    state = tiny_runner.rows.get(7)
    state.seq_len = 256  # the row is full: one more token overflows the context
    with pytest.raises(ValueError, match="context overflow"):
        drv.step(D, [ReqInput(3, drv.slots(1)), ReqInput(7, drv.slots(1))])
    tiny_runner.release([3, 7])


def test_decode_index_arrays_equal_the_general_ones(tiny_runner):
    from radixserve.worker.batch import _decode_arrays, _general_arrays
    from radixserve.worker.plan import plan_step

    drv = Driver(tiny_runner, first_slot=1200)
    drv.step(E, [ReqInput(r, drv.slots(n), [5] * n, None, GREEDY) for r, n in ((2, 3), (9, 5))])
    step = StepInput(0, D, [ReqInput(9, drv.slots(1)), ReqInput(2, drv.slots(1))])
    plans = plan_step(step, tiny_runner.rows, tiny_runner.limits)
    assert [p.start for p in plans] == [5, 3]
    assert _decode_arrays(plans) == _general_arrays(plans)
    tiny_runner.release([2, 9])
