"""WorkerServicer called directly (no network): pb in, pb out, around a real ModelRunner."""

from __future__ import annotations

import asyncio
import json

import pytest

from radixserve.v1 import common_pb2, worker_pb2
from radixserve.worker.config import WorkerConfig
from radixserve.worker.metrics import WorkerMetrics
from radixserve.worker.server import WorkerServicer, build_runner

TINY = {
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 97,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}


class FakeContext:
    def peer(self) -> str:
        return "test"

    async def abort(self, code, details):
        raise AssertionError(f"aborted: {code} {details}")


@pytest.fixture(scope="module")
def servicer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "config.json"
    path.write_text(json.dumps(TINY))
    cfg = WorkerConfig(model=str(path), load_format="dummy", num_slots=128, max_rows=4)
    servicer = WorkerServicer(WorkerMetrics())
    servicer.attach(build_runner(cfg))
    return servicer


def run_stream(servicer, requests):
    async def source():
        for r in requests:
            yield r

    async def go():
        return [r async for r in servicer.Forward(source(), FakeContext())]

    return asyncio.run(go())


def test_info_reports_capacity(servicer):
    resp = asyncio.run(servicer.GetWorkerInfo(worker_pb2.GetWorkerInfoRequest(), FakeContext()))
    assert resp.info.num_slots == 128 and resp.info.max_rows == 4
    assert resp.info.vocab_size == 97 and resp.info.num_kv_heads == 2


def test_extend_then_decode_steps(servicer):
    greedy = common_pb2.SamplingParams(temperature=0, max_new_tokens=4)
    steps = [
        worker_pb2.ForwardRequest(
            step_id=1,
            mode=worker_pb2.FORWARD_MODE_EXTEND,
            reqs=[
                worker_pb2.ForwardReq(
                    row=0, new_slots=[1, 2, 3], token_ids=[5, 6, 7], sampling=greedy
                )
            ],
        ),
        worker_pb2.ForwardRequest(
            step_id=2,
            mode=worker_pb2.FORWARD_MODE_DECODE,
            reqs=[worker_pb2.ForwardReq(row=0, new_slots=[4])],
        ),
        worker_pb2.ForwardRequest(
            step_id=3,
            mode=worker_pb2.FORWARD_MODE_DECODE,
            reqs=[worker_pb2.ForwardReq(row=0, new_slots=[5])],
            release_rows=[0],
        ),
    ]
    out = run_stream(servicer, steps)
    assert [o.step_id for o in out] == [1, 2, 3]
    assert all(not o.error and len(o.token_ids) == 1 and 0 <= o.token_ids[0] < 97 for o in out)
    # The same prompt again gives the same greedy tokens (nothing left behind in row 0).
    again = run_stream(servicer, steps)
    assert [list(o.token_ids) for o in again] == [list(o.token_ids) for o in out]


def test_bad_step_fails_alone_and_stream_goes_on(servicer):
    greedy = common_pb2.SamplingParams(temperature=0)
    steps = [
        worker_pb2.ForwardRequest(
            step_id=1,
            mode=worker_pb2.FORWARD_MODE_EXTEND,
            reqs=[worker_pb2.ForwardReq(row=99, new_slots=[1], token_ids=[5], sampling=greedy)],
        ),
        worker_pb2.ForwardRequest(
            step_id=2,
            mode=worker_pb2.FORWARD_MODE_EXTEND,
            reqs=[worker_pb2.ForwardReq(row=1, new_slots=[9], token_ids=[5], sampling=greedy)],
            release_rows=[1],
        ),
    ]
    out = run_stream(servicer, steps)
    assert "row" in out[0].error and not out[0].token_ids
    assert not out[1].error and len(out[1].token_ids) == 1


def test_packed_decode_steps_match_per_request_ones_and_bad_ones_fail_alone(servicer):
    greedy = common_pb2.SamplingParams(temperature=0, max_new_tokens=8)

    def extend(step_id):
        return worker_pb2.ForwardRequest(
            step_id=step_id,
            mode=worker_pb2.FORWARD_MODE_EXTEND,
            reqs=[
                worker_pb2.ForwardReq(row=0, new_slots=[1, 2], token_ids=[5, 6], sampling=greedy),
                worker_pb2.ForwardReq(row=1, new_slots=[3, 4], token_ids=[7, 8], sampling=greedy),
            ],
        )

    def decode(step_id, packed, slots, release=()):
        pb = worker_pb2.ForwardRequest(
            step_id=step_id, mode=worker_pb2.FORWARD_MODE_DECODE, release_rows=list(release)
        )
        if packed:
            pb.decode.rows.extend([1, 0])
            pb.decode.new_slots.extend(slots)
        else:
            pb.reqs.extend(
                worker_pb2.ForwardReq(row=r, new_slots=[s])
                for r, s in zip([1, 0], slots, strict=True)
            )
        return pb

    per_request = run_stream(
        servicer, [extend(1), decode(2, False, [10, 11]), decode(3, False, [12, 13], [0, 1])]
    )
    bad = worker_pb2.ForwardRequest(step_id=3, mode=worker_pb2.FORWARD_MODE_DECODE)
    bad.decode.rows.extend([1, 0])
    bad.decode.new_slots.extend([12])
    packed = run_stream(
        servicer,
        [extend(1), decode(2, True, [10, 11]), bad, decode(4, True, [12, 13], [0, 1])],
    )
    assert [list(o.token_ids) for o in per_request] == [
        list(o.token_ids) for o in (packed[0], packed[1], packed[3])
    ]
    assert "decode: 2 rows but 1 new_slots" in packed[2].error and not packed[2].token_ids
    assert all(len(o.token_ids) == 2 for o in per_request)
