#!/usr/bin/env python3
"""Generation-time MTP depth-1 acceptance of hybrid-run on held-out prompts: runs
`hybrid-run -m MODEL -p PROMPT -n N --draft mtp --draft-n 1 --stats-json F` (greedy) once per
prompt and sums the spec stats' accepted/drafted at depth 1.

Prompts: the first LINES lines of evenly spaced files of the held-out list
(scripts/train/runs/heldout_files.txt), read from the CPython 3.11.7 standard library.
Usage: python3 scripts/train/mtp_gen_acceptance.py [--bin target/release/hybrid-run]
       [--model models/qwen35-pystd-q8_0.gguf] [--prompts 16] [--lines 12] [-n 128] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/hybrid-run")
    ap.add_argument("--model", default="models/qwen35-pystd-q8_0.gguf")
    ap.add_argument("--lib", default="/root/.pyenv/versions/3.11.7/lib/python3.11")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--lines", type=int, default=12)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-out", default="")
    a = ap.parse_args()

    files = (HERE / "runs" / "heldout_files.txt").read_text().split()
    step = max(1, len(files) // a.prompts)
    picked = files[::step][: a.prompts]
    drafted = accepted = steps = gen = 0
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as td:
        for rel in picked:
            text = "".join((Path(a.lib) / rel).read_text(encoding="utf-8").splitlines(keepends=True)[: a.lines])
            sj = Path(td) / "stats.json"
            cmd = [a.bin, "-m", a.model, "-p", text, "-n", str(a.n), "-t", str(a.threads),
                   "--draft", "mtp", "--draft-n", "1", "--stats-json", str(sj)]
            r = subprocess.run(cmd, capture_output=True)
            if r.returncode != 0:
                sys.exit(f"{rel}: hybrid-run failed ({r.returncode}): {r.stderr.decode()[-500:]}")
            s = json.loads(sj.read_text())
            sp = s["spec"]
            d, k = sp["drafted_per_depth"][0], sp["accepted_per_depth"][0]
            drafted, accepted, steps, gen = drafted + d, accepted + k, steps + sp["steps"], gen + s["n_decode"]
            rows.append({"file": rel, "n_prompt": s["n_prompt"], "n_decode": s["n_decode"],
                         "drafted": d, "accepted": k, "stop": s.get("stop")})
            print(f"{rel:55s} prompt {s['n_prompt']:4d} gen {s['n_decode']:4d} depth-1 {k}/{d} (stop: {s.get('stop')})", flush=True)
    print(f"hybrid-run generation-time MTP depth-1 acceptance (greedy, --draft-n 1), {len(picked)} held-out "
          f"prompts, {gen} tokens generated (at most {a.n} each): {accepted / max(drafted, 1):.4f} ({accepted}/{drafted}), "
          f"{gen / max(steps, 1):.2f} tokens per step [{time.time() - t0:.1f} s]")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"accepted": accepted, "drafted": drafted, "steps": steps,
                                                "generated": gen, "prompts": rows}, indent=1))


if __name__ == "__main__":
    main()
