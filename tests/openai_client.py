#!/usr/bin/env python3
"""Drives `hybrid-run serve` with the official `openai` Python client (run by
tests/serve_openai.rs against a server on loopback). Exits non-zero on the first failed check."""

import argparse
import sys

import openai


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--n-ctx", type=int, required=True)
    a = ap.parse_args()

    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=120)
    checks = 0

    models = client.models.list()
    ids = [m.id for m in models.data]
    assert len(ids) == 1, ids
    model = ids[0]
    checks += 1

    msgs = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three colours."},
    ]
    whole = client.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0)
    text = whole.choices[0].message.content
    assert isinstance(text, str), whole
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason in ("stop", "length"), whole
    assert whole.usage.completion_tokens <= 16 and whole.usage.prompt_tokens > 0, whole.usage
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    checks += 1

    stream = client.chat.completions.create(
        model=model, messages=msgs, max_tokens=16, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            if delta.content:
                parts.append(delta.content)
            if chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(parts) == text, ("".join(parts), text)
    assert finish == whole.choices[0].finish_reason, finish
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage
    checks += 1

    comp = client.completions.create(model=model, prompt="def add(a, b):", max_tokens=12, temperature=0)
    ctext = comp.choices[0].text
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=model, prompt="def add(a, b):", max_tokens=12, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == ctext, (streamed, ctext)
    assert comp.usage.completion_tokens <= 12
    checks += 1

    seeded = [
        client.completions.create(
            model=model, prompt="x", max_tokens=10, temperature=1.0, seed=7, extra_body={"ignore_eos": True}
        ).choices[0].text
        for _ in range(2)
    ]
    assert seeded[0] == seeded[1], seeded
    checks += 1

    try:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "word " * (a.n_ctx * 2)}], max_tokens=4
        )
        raise AssertionError("an oversized prompt was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert e.code == "context_length_exceeded", e.body
        assert "context" in str(e), str(e)
    checks += 1

    try:
        client.chat.completions.create(model=model, messages=[], max_tokens=4)
        raise AssertionError("empty messages were accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400
    checks += 1

    bad = openai.OpenAI(base_url=a.base_url, api_key="not-the-key", max_retries=0, timeout=30)
    try:
        bad.models.list()
        raise AssertionError("a wrong API key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401
    checks += 1

    print(f"openai client {openai.__version__}: {checks} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
