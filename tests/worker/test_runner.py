"""ModelRunner.step semantics: batching, prefix reuse, chunked prefill, release, sampling."""

from __future__ import annotations

from radixserve.common.types import ForwardMode, ReqInput, SamplingParams
from tests.worker.helpers import GREEDY, Driver

PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [100, 3], [42] * 13, [7, 1, 250, 9, 18]]


def _alone(runner, prompt, max_new=10, **kw):
    return Driver(runner, first_slot=3000).generate([prompt], max_new, rows=[15], **kw)[0][0]


def test_batch_equals_each_alone(tiny_runner):
    alone = [_alone(tiny_runner, p) for p in PROMPTS]
    batched, _ = Driver(tiny_runner).generate(PROMPTS, 10, rows=[4, 1, 9, 0])
    assert batched == alone


def test_prefix_slots_reuse(tiny_runner):
    shared = [9, 8, 7, 6, 5, 4, 3, 2]
    prompt_b = shared + [77, 78, 79]
    expected = _alone(tiny_runner, prompt_b)
    drv = Driver(tiny_runner)
    _, slots_a = drv.generate([shared + [1, 2]], 4, rows=[2])
    # B (another row) reuses A's KV for the shared prefix and computes only its own 3 tokens.
    gen, _ = drv.generate([prompt_b], 10, rows=[8], prefixes=[slots_a[0][: len(shared)]])
    assert gen[0] == expected
    # Garbage in the reused prefix slots must change the answer (the prefix really is read).
    prefix = slots_a[0][: len(shared)]
    for k_buf in tiny_runner.kv_pool.k_bufs:
        k_buf[prefix] = 0.0
    gen, _ = drv.generate([prompt_b], 10, rows=[9], prefixes=[prefix])
    assert gen[0] != expected


def test_chunked_prefill_equals_one_shot(tiny_runner):
    prompts = [PROMPTS[0], PROMPTS[2]]
    one_shot = [_alone(tiny_runner, p) for p in prompts]
    chunked, _ = Driver(tiny_runner).generate(prompts, 10, rows=[6, 7], chunk=3)
    assert chunked == one_shot


def test_non_final_chunk_samples_nothing(tiny_runner):
    drv = Driver(tiny_runner)
    out = drv.step(ForwardMode.EXTEND, [ReqInput(3, drv.slots(2), [1, 2], None, GREEDY, False)])
    assert out.token_ids == [-1]
    out = drv.step(ForwardMode.EXTEND, [ReqInput(3, drv.slots(2), [3, 4])], release=[3])
    assert out.token_ids[0] >= 0


def test_mixed_step_prefill_with_decodes(tiny_runner):
    expected = [_alone(tiny_runner, p, max_new=3) for p in PROMPTS[:2]]
    drv = Driver(tiny_runner)
    a = drv.step(ForwardMode.EXTEND, [ReqInput(0, drv.slots(7), PROMPTS[0], None, GREEDY)])
    b = drv.step(
        ForwardMode.MIXED,
        [ReqInput(0, drv.slots(1)), ReqInput(1, drv.slots(2), PROMPTS[1], None, GREEDY)],
    )
    c = drv.step(ForwardMode.DECODE, [ReqInput(0, drv.slots(1)), ReqInput(1, drv.slots(1))])
    d = drv.step(ForwardMode.DECODE, [ReqInput(1, drv.slots(1))], release=[0, 1])
    assert [a.token_ids[0], b.token_ids[0], c.token_ids[0]] == expected[0]
    assert [b.token_ids[1], c.token_ids[1], d.token_ids[0]] == expected[1]


def test_released_row_is_reusable(tiny_runner):
    first = _alone(tiny_runner, PROMPTS[1])
    assert _alone(tiny_runner, PROMPTS[1]) == first  # row 15 released and reused
    assert tiny_runner.num_live_rows == 0


def test_seeded_sampling_is_reproducible(tiny_runner):
    params = SamplingParams(temperature=1.0, top_p=0.9, top_k=50, seed=1234)
    runs = [_alone(tiny_runner, PROMPTS[0], 12, sampling=params) for _ in range(2)]
    # The same seed in a batch with other (unseeded) requests draws the same tokens.
    batched, _ = Driver(tiny_runner).generate(
        [PROMPTS[1], PROMPTS[0]], 12, rows=[0, 1], sampling=params
    )
    assert runs[0] == runs[1] == batched[1]
    other = _alone(tiny_runner, PROMPTS[0], 12, sampling=SamplingParams(seed=99))
    assert other != runs[0]


def test_logprobs_when_asked(tiny_runner):
    drv = Driver(tiny_runner)
    params = SamplingParams(temperature=0.0, logprobs=True)
    out = drv.step(
        ForwardMode.EXTEND,
        [ReqInput(0, drv.slots(2), [1, 2], None, params), ReqInput(1, drv.slots(1), [3], None)],
        release=[0, 1],
    )
    assert out.logprobs is not None and len(out.logprobs) == 2
    assert out.logprobs[0] < 0.0 and out.logprobs[1] == 0.0
    out = drv.step(ForwardMode.EXTEND, [ReqInput(0, drv.slots(1), [1], None, GREEDY)], [0])
    assert out.logprobs is None


def test_info(tiny_runner, embedded_runner):
    info = embedded_runner.info
    assert (info.vocab_size, info.num_layers, info.num_heads, info.num_kv_heads) == (
        49152, 30, 9, 3
    )  # fmt: skip
    assert info.eos_token_ids == (2,) and info.max_context_len == 512
    assert info.num_slots == 2048 and info.dtype == "float32" and info.device == "cpu"
    assert tiny_runner.info.vocab_size == 256
