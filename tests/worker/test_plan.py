"""The common decode step's one-pass check and short array builder agree with the general ones:
the same plans, the same records, the same messages (no model: a row table and plans only)."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from radixserve.common.types import ForwardMode, ReqInput, SamplingParams, StepInput
from radixserve.worker.batch import _decode_arrays, _general_arrays, is_sampled_decode
from radixserve.worker.plan import Limits, _plan_general, _plan_plain_decode
from radixserve.worker.rows import RowTable

LIM = Limits(max_rows=6, num_slots=40, max_context_len=12, vocab_size=32)

# A row: free, or live with some tokens and maybe a sampled one (some are full); mostly ready.
ready = st.tuples(st.integers(0, LIM.max_context_len - 1), st.just(7))
others = st.none() | st.tuples(st.integers(0, LIM.max_context_len), st.none() | st.just(7))
row_states = st.one_of(ready, ready, ready, ready, others)
slot_lists = st.lists(st.integers(-1, LIM.num_slots), min_size=0, max_size=2)
any_req = st.builds(
    ReqInput,
    row=st.integers(-1, LIM.max_rows),
    new_slots=slot_lists,
    token_ids=st.none() | st.just([3]),
    prefix_slots=st.none() | st.just([2]),
    sampling=st.none() | st.just(SamplingParams(temperature=0.0)),
    sample=st.booleans(),
)


@st.composite
def decode_steps(draw):
    """Plain decodes on distinct rows; or one of them repeats a row, or is anything."""
    rows = draw(st.permutations(range(LIM.max_rows)))[: draw(st.integers(1, 4))]
    change = draw(st.sampled_from(["none", "repeat", "any"]))
    if change == "repeat":
        rows.append(rows[-1])
    step = [ReqInput(r, [draw(st.integers(0, LIM.num_slots))]) for r in rows]
    if change == "any":
        step[draw(st.integers(0, len(step) - 1))] = draw(any_req)
    return step


def _outcome(plan, *args):
    try:
        return plan(*args)
    except ValueError as exc:
        return str(exc)


@given(
    st.lists(row_states, min_size=LIM.max_rows, max_size=LIM.max_rows),
    decode_steps(),
)
def test_one_pass_decode_check_agrees_with_the_general_checks(states, step_reqs):
    rows = RowTable(LIM.max_rows, torch.device("cpu"))
    for row, state in enumerate(states):
        if state is not None:
            rows.start(row, None, state[0]).last_token = state[1]
    step = StepInput(0, ForwardMode.DECODE, step_reqs)
    general = _outcome(_plan_general, step, rows, LIM)
    fast = _outcome(_plan_plain_decode, step_reqs, rows, LIM)
    if fast is not None:  # accepted (or a bad slot): exactly what the general checks say
        assert fast == general
    if isinstance(general, list) and all(r.is_plain_decode for r in step_reqs):
        assert fast is not None  # the common step never falls back to the general checks
    if isinstance(fast, list):
        assert is_sampled_decode(step.mode, fast)
        assert _decode_arrays(fast) == _general_arrays(fast)
