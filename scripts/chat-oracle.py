#!/usr/bin/env python3
"""Render chat conversations with Jinja2, the way llama-cpp-python / HF transformers do, as the
oracle for our minijinja rendering.

    chat-oracle.py --template Qwen3.5-4B.jinja --out chat-cases.json

Environment as llama-cpp-python's Jinja2ChatFormatter: ImmutableSandboxedEnvironment with
trim_blocks and lstrip_blocks, `raise_exception`. Each case records the messages, options and
either the rendered text or the exception message.
"""
import argparse
import json

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

CASES = [
    {"messages": [{"role": "user", "content": "Hello"}]},
    {"messages": [{"role": "user", "content": "Hello"}], "enable_thinking": False},
    {"messages": [{"role": "user", "content": "Hello"}], "enable_thinking": True},
    {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}]},
    {"messages": [{"role": "system", "content": "  padded system  \n"}, {"role": "user", "content": "  hi  "}],
     "enable_thinking": False},
    {"messages": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
                  {"role": "user", "content": "Q2"}]},
    {"messages": [{"role": "user", "content": "Q1"},
                  {"role": "assistant", "content": "<think>\nreasoning one\n</think>\n\nA1"},
                  {"role": "user", "content": "Q2"},
                  {"role": "assistant", "content": "<think>\nreasoning two\n</think>\n\nA2"}]},
    {"messages": [{"role": "user", "content": "Q1"},
                  {"role": "assistant", "content": "<think>\nr\n</think>\n\nA1"}],
     "add_generation_prompt": False},
    {"messages": [{"role": "user", "content": "<tool_response>\nok\n</tool_response>"}]},
    {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "calling"},
                  {"role": "tool", "content": "result 1"}, {"role": "tool", "content": "result 2"}]},
    {"messages": [{"role": "user", "content": "Ünïcödé ✓ 🦙 中文\n\n  code:\n\tx = 1"}], "enable_thinking": False},
    {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "late system"}]},
    {"messages": [{"role": "assistant", "content": "no user"}]},
    {"messages": [{"role": "narrator", "content": "x"}, {"role": "user", "content": "y"}]},
]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--template", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    tmpl = env.from_string(open(a.template).read())
    out = []
    for c in CASES:
        ctx = {"messages": c["messages"], "add_generation_prompt": c.get("add_generation_prompt", True),
               "raise_exception": raise_exception, "bos_token": "", "eos_token": ""}
        if "enable_thinking" in c:
            ctx["enable_thinking"] = c["enable_thinking"]
        case = dict(c)
        try:
            case["expected"] = tmpl.render(**ctx)
        except jinja2.exceptions.TemplateError as e:
            case["error"] = str(e)
        out.append(case)
    with open(a.out, "w") as f:
        json.dump({"cases": out}, f, ensure_ascii=False, indent=1)
    print(f"wrote {a.out}: {len(out)} cases")


if __name__ == "__main__":
    main()
