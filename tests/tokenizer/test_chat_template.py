"""Chat template rendering: the embedded model's template, the default, validation, sandbox."""

from __future__ import annotations

import pytest

from radixserve.tokenizer.chat_template import (
    DEFAULT_CHAT_TEMPLATE,
    ChatTemplateError,
    render_chat,
    render_chat_for,
    validate_messages,
)

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_embedded_template_adds_default_system(smollm):
    prompt = render_chat_for(smollm, [{"role": "user", "content": "Hi"}])
    assert prompt == f"{SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_embedded_template_multi_turn(smollm, smollm_reference):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "How"}, {"type": "text", "text": "are you?"}],
        },
    ]
    prompt = render_chat_for(smollm, messages, add_generation_prompt=False)
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow\nare you?<|im_end|>\n"
    )
    plain = [dict(m, content=validate_messages([m])[0]["content"]) for m in messages]
    expected = smollm_reference.apply_chat_template(
        plain, tokenize=False, add_generation_prompt=True
    )
    assert render_chat_for(smollm, messages) == expected
    ids = smollm.encode(expected)
    assert ids[0] == smollm.bos_token_id and ids.count(2) == 4  # one <|im_end|> per turn


def test_default_template_is_chatml():
    prompt = render_chat([{"role": "user", "content": "x"}], None)
    assert prompt == "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
    assert render_chat([{"role": "user", "content": "x"}], DEFAULT_CHAT_TEMPLATE) == prompt
    no_prompt = render_chat([{"role": "user", "content": "x"}], add_generation_prompt=False)
    assert no_prompt == "<|im_start|>user\nx<|im_end|>\n"


def test_template_sees_tokens_helpers_and_trims_blocks():
    template = (
        "{{ bos_token }}\n{% for m in messages %}\n  {%- if m.role == 'tool' %}"
        "{{ raise_exception('no tools here') }}{% endif %}\n{{ m.content | tojson }}\n"
        "{% endfor %}{{ eos_token }}{{ extra }}"
    )
    out = render_chat(
        [{"role": "user", "content": "é"}], template, bos_token="<s>", eos_token="</s>", extra="!"
    )
    assert out == '<s>\n"é"\n</s>!'
    with pytest.raises(ChatTemplateError, match="no tools here"):
        render_chat([{"role": "tool", "content": "r"}], template)


def test_template_errors_are_value_errors():
    with pytest.raises(ValueError, match="chat template"):
        render_chat([{"role": "user", "content": "x"}], "{% for %}")
    with pytest.raises(ValueError, match="chat template"):
        render_chat([{"role": "user", "content": "x"}], "{{ messages[5].content + 1 }}")


def test_sandbox_blocks_unsafe_access():
    evil = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(ChatTemplateError):
        render_chat([{"role": "user", "content": "x"}], evil)
    mutate = "{{ messages.append(1) }}"
    with pytest.raises(ChatTemplateError):
        render_chat([{"role": "user", "content": "x"}], mutate)


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([], "messages:"),
        ("hi", "messages:"),
        (["hi"], "messages[0]:"),
        ([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}], "messages[1].role"),
        ([{"content": "a"}], "messages[0].role"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "messages[0].content[0].type"),
        (
            [{"role": "user", "content": [{"type": "text", "text": 1}]}],
            "messages[0].content[0].text",
        ),
        ([{"role": "user", "content": ["x"]}], "messages[0].content[0]:"),
        ([{"role": "assistant", "content": None, "tool_calls": "x"}], "messages[0].tool_calls"),
        ([{"role": "user", "content": "a", "name": 3}], "messages[0].name"),
    ],
)
def test_bad_messages_name_the_field(messages, field):
    with pytest.raises(ValueError) as info:
        render_chat(messages)
    assert str(info.value).startswith(field)


def test_validate_normalizes_content():
    out = validate_messages([{"role": "assistant", "content": None, "tool_calls": []}])
    assert out == [{"role": "assistant", "content": "", "tool_calls": []}]
