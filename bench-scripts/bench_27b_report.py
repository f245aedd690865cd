#!/usr/bin/env python3
"""Table, JSON and plot for bench-27b-mtp.sh / bench-27b-mtp.ps1 (both call this, so the two
scripts print the same output).

Reads RUNS/meta.tsv (key<TAB>value lines) and RUNS/runs.tsv (one line per run, columns in
COLUMNS below) written by the driver script; the hybrid-run rows' numbers come from the
`--stats-json` files the binary wrote, the llama.cpp rows' from `llama-bench -o json`.
Writes PREFIX.md (the table), PREFIX.json (the same rows) and PREFIX.png (decode t/s
against draft length k for each placement); prints the table. Exit status 1 when any row
is an error (a failed run, or a text that is not the MTP-off run's greedy text).
"""
import argparse
import json
import os
import sys

COLUMNS = ["tag", "engine", "placement", "prompt", "k", "rc", "wall_s", "timed_out",
           "vram_peak_mib", "stats", "text"]
GIB = 1 << 30
MIB = 1 << 20


def read_tsv(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line:
                rows.append(line.split("\t"))
    return rows


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def fnum(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def roofline_tps(host_bytes, gpu_bytes, host_bw, gpu_bw):
    """Decode bound in tokens/s: the weight bytes of one step read once at full bandwidth."""
    t = 0.0
    if host_bytes:
        t += host_bytes / (host_bw * 1e9)
    if gpu_bytes:
        t += gpu_bytes / (gpu_bw * 1e9)
    return 1.0 / t if t > 0 else None


def hybrid_row(run, stats, meta, bw):
    row = base_row(run)
    notes = row["notes"]
    if stats is None:
        if not row["timed_out"]:
            notes.append("error: no stats (exit %s)" % run["rc"])
            row["error"] = True
        return row
    row["prompt_tokens"] = stats.get("n_prompt")
    row["prefill_tps"] = stats.get("prompt_tps")
    row["decode_tokens"] = stats.get("n_decode")
    row["decode_tps"] = stats.get("decode_tps")
    spec = stats.get("spec")
    n_dec = stats.get("n_decode") or 0
    dec_ms = stats.get("decode_ms") or 0.0
    if spec:
        row["acceptance"] = spec.get("acceptance")
        row["tokens_per_step"] = spec.get("tokens_per_step")
        steps = spec.get("steps") or 0
        row["step_ms"] = dec_ms / steps if steps else None
    else:
        row["tokens_per_step"] = 1.0 if n_dec else None
        row["step_ms"] = dec_ms / n_dec if n_dec else None
    if run["placement"] != "cpu" and stats.get("placement") == "cpu":
        notes.append("no usable GPU: ran on the CPU")
    if stats.get("spec_skipped"):
        notes.append("spec unsupported on GPU (decoded with k=0)")
    elif run["k"] > 0 and not spec:
        notes.append("speculation did not run")
    row["tokens"] = stats.get("tokens")
    row["host_bytes_per_token"] = stats.get("host_bytes_per_token")
    row["gpu_bytes_per_token"] = stats.get("gpu_bytes_per_token")
    roof = roofline_tps(row["host_bytes_per_token"], row["gpu_bytes_per_token"], *bw)
    row["roofline_tps"] = roof
    if roof and row["decode_tps"]:
        row["roofline_frac"] = row["decode_tps"] / roof
    rss = stats.get("peak_rss_bytes")
    row["peak_rss_mib"] = rss / MIB if rss else None
    dev = stats.get("gpu_mem_used_bytes")
    if dev:
        row["peak_vram_mib"] = max(row["peak_vram_mib"] or 0.0, dev / MIB)
    if stats.get("stop") not in ("n_predict", None):
        notes.append("stopped: %s" % stats.get("stop"))
    return row


def llama_row(run, bench, our_rows):
    row = base_row(run)
    if not bench:
        if not row["timed_out"]:
            row["notes"].append("error: no llama-bench output (exit %s)" % run["rc"])
            row["error"] = True
        return row
    for e in bench:
        if e.get("n_prompt", 0) > 0 and e.get("n_gen", 0) == 0:
            row["prompt_tokens"] = e["n_prompt"]
            row["prefill_tps"] = e.get("avg_ts")
        elif e.get("n_gen", 0) > 0:
            row["decode_tokens"] = e["n_gen"]
            row["decode_tps"] = e.get("avg_ts")
            if e.get("avg_ts"):
                row["step_ms"] = 1000.0 / e["avg_ts"]
            row["tokens_per_step"] = 1.0
    # Same model and split as our MTP-off row of this placement and prompt: same roofline.
    ours = our_rows.get((run["placement"], run["prompt"], 0))
    if ours and ours.get("roofline_tps") and row["decode_tps"]:
        row["roofline_tps"] = ours["roofline_tps"]
        row["roofline_frac"] = row["decode_tps"] / ours["roofline_tps"]
    row["notes"].append("llama-bench (no text, no MTP)")
    return row


def base_row(run):
    return {
        "tag": run["tag"], "engine": run["engine"], "placement": run["placement"],
        "prompt": run["prompt"], "k": run["k"],
        "prompt_tokens": None, "prefill_tps": None, "decode_tokens": None, "decode_tps": None,
        "acceptance": None, "tokens_per_step": None, "step_ms": None,
        "roofline_tps": None, "roofline_frac": None,
        "peak_vram_mib": fnum(run["vram_peak_mib"]), "peak_rss_mib": None,
        "wall_s": fnum(run["wall_s"]), "timed_out": run["timed_out"],
        "text_matches_k0": None, "vs_llamacpp": None, "error": False, "tokens": None,
        "notes": (["timed out"] if run["timed_out"] else []),
    }


def fmt(x, spec):
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    return format(x, spec)


HEADER = ["tag", "prompt tok", "prefill t/s", "decode tok", "decode t/s", "accept",
          "tok/step", "step ms", "roofline", "vs llama.cpp", "peak VRAM MiB", "peak RSS MiB",
          "wall s", "timed out", "text = k0", "notes"]


def table_lines(rows):
    out = ["| " + " | ".join(HEADER) + " |",
           "|" + "|".join(["---"] + ["---:"] * 13 + ["---", "---"]) + "|"]
    for r in rows:
        acc = "-" if r["acceptance"] is None else "%.0f%%" % (100 * r["acceptance"])
        roof = "-" if r["roofline_frac"] is None else "%.0f%%" % (100 * r["roofline_frac"])
        match = {None: "-", True: "yes", False: "**NO**"}[r["text_matches_k0"]]
        out.append("| " + " | ".join([
            r["tag"], fmt(r["prompt_tokens"], "d"), fmt(r["prefill_tps"], ".1f"),
            fmt(r["decode_tokens"], "d"), fmt(r["decode_tps"], ".2f"), acc,
            fmt(r["tokens_per_step"], ".2f"), fmt(r["step_ms"], ".1f"), roof,
            fmt(r["vs_llamacpp"], ".2f"), fmt(r["peak_vram_mib"], ".0f"),
            fmt(r["peak_rss_mib"], ".0f"), fmt(r["wall_s"], ".1f"),
            "yes" if r["timed_out"] else "no", match,
            ("ERROR: " if r["error"] else "") + "; ".join(r["notes"]),
        ]) + " |")
    return out


def plot(rows, path, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"code": "-o", "prose": "--s"}
    for placement in sorted({r["placement"] for r in rows}):
        for prompt in sorted({r["prompt"] for r in rows}):
            pts = sorted((r["k"], r["decode_tps"]) for r in rows
                         if r["engine"] == "hybrid-run" and r["placement"] == placement
                         and r["prompt"] == prompt and r["decode_tps"] and not r["error"]
                         and not (r["k"] > 0 and r["acceptance"] is None))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], styles.get(prompt, "-x"),
                        label="hybrid-run %s, %s" % (placement, prompt))
        for r in rows:
            if r["engine"] == "llama.cpp" and r["placement"] == placement and r["decode_tps"]:
                ax.axhline(r["decode_tps"], linestyle=":", linewidth=1, color="gray")
                ax.annotate("llama.cpp %s %s" % (placement, r["prompt"]), (0, r["decode_tps"]),
                            fontsize=7, color="gray")
    ax.set_xlabel("draft length k (--draft-n; 0 = MTP off)")
    ax.set_ylabel("decode tokens/s")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", help="folder with meta.tsv and runs.tsv")
    ap.add_argument("prefix", help="output path prefix: PREFIX.md, PREFIX.json, PREFIX.png")
    a = ap.parse_args()
    meta = dict((r + [""])[:2] for r in read_tsv(os.path.join(a.runs, "meta.tsv")))
    host_bw = float(meta.get("host_bw_gbs") or 0) or 1e-9
    gpu_bw = float(meta.get("gpu_bw_gbs") or 0) or 1e-9
    runs = []
    for cols in read_tsv(os.path.join(a.runs, "runs.tsv")):
        run = dict(zip(COLUMNS, cols + [""] * (len(COLUMNS) - len(cols))))
        run["k"] = int(run["k"] or 0)
        run["timed_out"] = run["timed_out"] == "1"
        runs.append(run)

    rows, ours = [], {}
    for run in runs:
        if run["engine"] == "hybrid-run":
            stats = load_json(os.path.join(a.runs, run["stats"])) if run["stats"] else None
            r = hybrid_row(run, stats, meta, (host_bw, gpu_bw))
            ours[(run["placement"], run["prompt"], run["k"])] = r
            rows.append(r)
    for run in runs:
        if run["engine"] == "llama.cpp":
            bench = load_json(os.path.join(a.runs, run["stats"])) if run["stats"] else None
            rows.append(llama_row(run, bench, ours))

    # Greedy text check: every k > 0 run against the MTP-off run of its placement and prompt.
    by_tag = {run["tag"]: run for run in runs}
    for r in rows:
        if r["engine"] != "hybrid-run" or r["k"] == 0 or r["decode_tps"] is None:
            continue
        base = ours.get((r["placement"], r["prompt"], 0))
        if base is None or base["decode_tps"] is None:
            continue
        t0 = read_text(os.path.join(a.runs, by_tag[base["tag"]]["text"]))
        t1 = read_text(os.path.join(a.runs, by_tag[r["tag"]]["text"]))
        same = t0 is not None and t0 == t1
        ids0, ids1 = base.get("tokens"), r.get("tokens")
        if ids0 is not None and ids1 is not None:
            same = same and ids0 == ids1  # token ids too: a synthetic model's text can be empty
        elif t0 is not None and not t0.strip():
            r["notes"].append("empty text and no token ids: check is vacuous")
        r["text_matches_k0"] = same
        if not same:
            r["error"] = True
            r["notes"].append("text differs from the MTP-off run")
    # Ratio to llama.cpp's decode on the same placement and prompt.
    for r in rows:
        if r["engine"] != "hybrid-run" or not r["decode_tps"]:
            continue
        for l in rows:
            if (l["engine"] == "llama.cpp" and l["placement"] == r["placement"]
                    and l["prompt"] == r["prompt"] and l["decode_tps"]):
                r["vs_llamacpp"] = r["decode_tps"] / l["decode_tps"]

    title = "%s, %s decode tokens, %s threads" % (
        os.path.basename(meta.get("model", "?")), meta.get("n_predict", "?"),
        meta.get("threads", "?"))
    head = [
        "## bench-27b-mtp: %s" % meta.get("date", ""),
        "",
        "- model: `%s` (%s bytes); host: %s; GPU: %s" % (
            meta.get("model", "?"), meta.get("model_bytes", "?"), meta.get("host", "?"),
            meta.get("gpu", "none")),
        "- binary: %s; %s decode tokens per run, %s threads, greedy (--temp 0), drafter MTP; "
        "hybrid = `--gpu-layers %s` (dense FFN of layers %s.. on the CPU)" % (
            meta.get("version", "?"), meta.get("n_predict", "?"), meta.get("threads", "?"),
            meta.get("hybrid_layers", "?"), meta.get("hybrid_layers", "?")),
        "- roofline = 1 / (host bytes per token / %s GB/s + GPU bytes per token / %s GB/s); "
        "bandwidths %s" % (meta.get("host_bw_gbs"), meta.get("gpu_bw_gbs"),
                           meta.get("bw_source", "given")),
        "- acceptance = kept drafts / drafts; tok/step = tokens per verify step; step ms = "
        "decode time / steps; text = k0: the greedy text equals the MTP-off run's",
        "- peak VRAM: the device's memory in use (nvidia-smi samples and the binary's reading "
        "at the end), all processes; peak RSS: the process's VmHWM",
        "",
    ]
    lines = head + table_lines(rows)
    text = "\n".join(lines) + "\n"
    with open(a.prefix + ".md", "w", encoding="utf-8") as f:
        f.write(text)
    with open(a.prefix + ".json", "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    plotted = plot(rows, a.prefix + ".png", title)
    sys.stdout.write(text)
    print("wrote %s.md, %s.json%s" % (a.prefix, a.prefix, ", %s.png" % a.prefix if plotted else ""))
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
