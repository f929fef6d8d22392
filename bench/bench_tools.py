"""Function calling and structured output that end cleanly, on the embedded model (issue 25).

Starts the three services (``bench/serving/launch.py``, the embedded SmolLM2 unless ``--model``)
and, through the real ``openai`` client, at temperature 0 and 1:

  tools      30 tool prompts with tool_choice required (even ones) or named (odd ones),
             max_tokens 128: the rate that ends with finish_reason ``tool_calls`` and arguments
             valid against the tool's schema;
  tools_auto the same prompts with tool_choice auto: the unconstrained baseline;
  json       30 JSON schemas as response_format, max_tokens 256: the rate of schema-valid JSON;
  json_free  the same schemas asked for in the prompt only: the unconstrained baseline.

Writes ``bench/results/tools-cpu.json`` (or ``--out``) and prints a table.

    python bench/bench_tools.py                     # about 5 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "services")]  # the source roots

import jsonschema  # noqa: E402
import openai  # noqa: E402

from bench.serving import launch  # noqa: E402

S, INT, N, B = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
HEX = {"type": "string", "pattern": "^#[0-9a-f]{6}$"}


def _obj(required: bool = True, **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(props)
    return out


def _tool(name: str, description: str, params: dict[str, Any] | None) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": name, "description": description}
    if params is not None:
        fn["parameters"] = params
    return {"type": "function", "function": fn}


TOOLS = [
    _tool("get_weather", "Current weather of a city", _obj(city=S, unit={"enum": ["C", "F"]})),
    _tool("send_email", "Send an email", _obj(to=S, subject=S, body=S)),
    _tool("get_price", "Price of a stock", _obj(ticker=S)),
    _tool("add", "Add two numbers", _obj(a=N, b=N)),
    _tool("get_time", "Current time", None),
    _tool("search", "Search the web", _obj(query=S, limit={"type": "integer", "maximum": 10})),
    _tool("book_table", "Book a restaurant", _obj(restaurant=S, people=INT, time=S)),
    _tool("set_alarm", "Set an alarm", _obj(hour=INT, minute=INT, label=S)),
    _tool("translate", "Translate a text", _obj(text=S, target={"enum": ["fr", "de", "es"]})),
    _tool("create_todo", "Add a todo item", _obj(title=S, done=B, tags={"type": "array",
                                                                         "items": S})),
]  # fmt: skip
ASKS = [
    (0, "What is the weather in Paris?"), (0, "Is it cold in Oslo today, in F?"),
    (0, "Weather for Tokyo please"), (1, "Email ann@x.org that lunch is at noon."),
    (1, "Send bob@y.com a note saying thanks for the report."), (1, "Mail the team: build is red"),
    (2, "Check the price of MSFT."), (2, "How much is AAPL trading at?"), (2, "NVDA price?"),
    (3, "What is 12.5 plus 7?"), (3, "Add 3 and 4"), (3, "Sum of 100 and 250.75"),
    (4, "What time is it?"), (4, "Tell me the current time."), (5, "Search for llama recipes"),
    (5, "Find 3 articles about Rust async"), (5, "Look up the tallest mountain"),
    (6, "Book a table for 4 at Luigi's at 8pm"), (6, "Reserve Sushi Bar for two at 19:00"),
    (7, "Wake me at 6:30 for the gym"), (7, "Set an alarm for 7 am labelled work"),
    (8, "Translate 'good morning' to French"), (8, "How do you say cat in German?"),
    (8, "Spanish for 'thank you very much'"), (9, "Add 'buy milk' to my todos"),
    (9, "Remind me to call mom, tag it family"), (9, "New todo: finish the report, not done"),
    (0, "Do I need an umbrella in London?"), (2, "Quote for GOOG"), (6, "Table for 6 at Noma"),
]  # fmt: skip
SCHEMAS = [
    _obj(name=S, age=INT), _obj(city=S, population=INT), _obj(title=S, year=INT, rating=N),
    _obj(ok=B), _obj(colors={"type": "array", "items": S, "maxItems": 5}),
    _obj(x=N, y=N), _obj(answer={"enum": ["yes", "no", "maybe"]}),
    _obj(first=S, last=S, email=S), _obj(value=N), _obj(count=INT, unit=S),
    _obj(person=_obj(name=S, age=INT)), _obj(tags={"type": "array", "items": S}),
    _obj(sku=S, price=N, stock=INT), _obj(lat=N, lon=N), _obj(word=S, length=INT),
    _obj(country=S, capital=S), _obj(summary=S), _obj(items={"type": "array", "items": INT}),
    _obj(score={"type": "number", "minimum": 0, "maximum": 10}), _obj(done=B, note=S),
    _obj(start=S, end=S), _obj(a=INT, b=INT, c=INT), _obj(language=S, version=S),
    _obj(steps={"type": "array", "items": S, "maxItems": 4}), _obj(hex=HEX),
    _obj(animal=S, legs=INT, wild=B), _obj(author=S, book=S), _obj(temperature=N, unit=S),
    _obj(required=False, nickname=S), _obj(point=_obj(x=INT, y=INT), label=S),
]  # fmt: skip


def _tool_run(oai: openai.OpenAI, model: str, i: int, temp: float, mode: str) -> bool:
    tool_i, ask = ASKS[i]
    tool = TOOLS[tool_i]
    name = tool["function"]["name"]
    choice: Any = "auto" if mode == "auto" else "required" if i % 2 == 0 else None
    if choice is None:
        choice = {"type": "function", "function": {"name": name}}
    others = [TOOLS[(tool_i + 1) % len(TOOLS)], TOOLS[(tool_i + 5) % len(TOOLS)]]
    out = oai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": ask}], tools=[tool, *others],
        tool_choice=choice, max_tokens=128, temperature=temp, seed=i,
    ).choices[0]  # fmt: skip
    if out.finish_reason != "tool_calls" or not out.message.tool_calls:
        return False
    schemas = {t["function"]["name"]: t["function"].get("parameters") for t in [tool, *others]}
    for call in out.message.tool_calls:
        try:
            args = json.loads(call.function.arguments)
            jsonschema.validate(args, schemas[call.function.name] or _obj())
        except (json.JSONDecodeError, jsonschema.ValidationError, KeyError):
            return False
    return True


def _json_run(oai: openai.OpenAI, model: str, i: int, temp: float, free: bool) -> bool:
    schema = SCHEMAS[i]
    ask = f"Reply with one JSON object matching this JSON schema: {json.dumps(schema)}"
    kw: dict[str, Any] = {"model": model, "max_tokens": 256, "temperature": temp, "seed": i}
    if not free:
        fmt = {"name": "answer", "schema": schema}
        kw["response_format"] = {"type": "json_schema", "json_schema": fmt}
    out = oai.chat.completions.create(messages=[{"role": "user", "content": ask}], **kw)
    text = (out.choices[0].message.content or "").strip()
    if free and text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        jsonschema.validate(json.loads(text), schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="", help="a --model for the services (default: embedded)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "tools-cpu.json"))
    args = p.parse_args(argv)
    model_flags = ["--model", args.model] if args.model else []
    services = launch.start_services(model_flags, ["--max-rows", str(args.concurrency)])
    try:
        oai = openai.OpenAI(base_url=f"{services.base_url}/v1", api_key="x", max_retries=0)
        model = oai.models.list().data[0].id
        runs = {
            "tools": lambda i, t: _tool_run(oai, model, i, t, "forced"),
            "tools_auto": lambda i, t: _tool_run(oai, model, i, t, "auto"),
            "json": lambda i, t: _json_run(oai, model, i, t, free=False),
            "json_free": lambda i, t: _json_run(oai, model, i, t, free=True),
        }
        sizes = {"tools": len(ASKS), "tools_auto": len(ASKS), "json": len(SCHEMAS)}
        sizes["json_free"] = len(SCHEMAS)
        results: dict[str, Any] = {"model": model, "rates": {}}
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            for name, run in runs.items():
                for temp in (0.0, 1.0):
                    start = time.perf_counter()
                    oks = list(pool.map(lambda i, r=run, t=temp: r(i, t), range(sizes[name])))
                    rate = sum(oks) / len(oks)
                    results["rates"][f"{name}@{temp:g}"] = {
                        "ok": sum(oks), "runs": len(oks), "rate": round(rate, 3),
                        "seconds": round(time.perf_counter() - start, 1),
                    }  # fmt: skip
                    print(f"{name}@{temp:g}: {results['rates'][f'{name}@{temp:g}']}", flush=True)
    finally:
        services.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'run':<16}{'ok/runs':>10}{'rate':>8}{'s':>8}")
    for key, row in results["rates"].items():
        print(f"{key:<16}{row['ok']:>5}/{row['runs']:<4}{row['rate']:>8.1%}{row['seconds']:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
