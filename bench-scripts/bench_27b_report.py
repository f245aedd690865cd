#!/usr/bin/env python3
"""The shared half of bench-27b-mtp.sh and bench-27b-mtp.ps1: the run plan and the report.

Both drivers call this file, so they accept the same options and run the same commands, and
print the same table:

  bench_27b_report.py plan [OPTIONS]   checks the options, resolves the defaults and prints
      the plan. With --dry-run: one human-readable line per command (`RUN tag: argv`, the
      argv quoted as a POSIX shell would need it), byte for byte the same from either driver.
      Without: tab-separated lines the driver executes (SET/META/SYNTH/RUN, see plan_lines).
  bench_27b_report.py RUNS PREFIX      the report: reads RUNS/meta.tsv (key<TAB>value lines)
      and RUNS/runs.tsv (one line per run, columns in COLUMNS below) written by the driver;
      the hybrid-run rows' numbers come from the `--stats-json` files the binary wrote, the
      llama.cpp rows' from `llama-bench -o json`. Writes PREFIX.md (the table), PREFIX.json
      (the same rows) and PREFIX.png (decode t/s against draft length k for each placement;
      skipped with a message when matplotlib is missing); prints the table. Exit status 1
      when any row is an error (a failed run, or a text that is not the MTP-off run's greedy
      text).
"""
import argparse
import json
import os
import re
import shlex
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


# ---- the plan (shared by both drivers) ---------------------------------------------------

PROMPTS = ["code", "prose"]
PLACEMENTS = ["cpu", "hybrid", "gpu"]
ASSUMED_HOST_BW = "103"   # the 16-core H200 host of docs/benchmarks (an assumption)
ASSUMED_GPU_BW = "3350"   # H100 SXM HBM3 nominal (an assumption)
N_PROMPT = "<n_prompt:%s>"  # llama-bench -p placeholder: the driver puts the MTP-off run's count


class PlanError(Exception):
    """A bad option: the drivers print `bench-27b-mtp: MESSAGE` and exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise PlanError(message)


def plan_parser():
    ap = _Parser(
        prog="bench-27b-mtp", allow_abbrev=False,
        description="Decode benchmark of a Qwen3.5/3.6-27B GGUF with and without MTP "
        "speculation, CPU-only and hybrid (GPU + CPU). The same options for "
        "bench-27b-mtp.sh (as written here) and bench-27b-mtp.ps1 (-Model, -NPredict, "
        "-VsLlamacpp, -DryRun, ...: each long option in PascalCase).")
    a = ap.add_argument
    a("--model", help="GGUF model (first shard of a split model) [the synthetic 27B preset, "
      "written once into $HYBRID_CACHE, default ~/.cache/hybrid-run]")
    a("--bin", help="hybrid-run binary [.dev-carry/bench/hybrid-run if present, else "
      "target/release/hybrid-run]")
    a("--out", default="target/bench-27b-mtp", help="per-run files [%(default)s]")
    a("--report", help="writes PREFIX.md, PREFIX.json, PREFIX.png [OUT/bench-27b-mtp]")
    a("-n", "--n-predict", default="64", help="decode tokens per run [%(default)s]")
    a("--ks", default="0,1,2,3,4,5", help="draft lengths, 0 = MTP off [%(default)s]")
    a("--placements", default="cpu,hybrid", help="cpu, hybrid, gpu [%(default)s]")
    a("--hybrid-layers", default="18", help="hybrid: dense FFN of layers 0..N-1 on the GPU, "
      "the rest on the CPU [%(default)s]")
    a("-t", "--threads", help="CPU threads for hybrid-run and llama-bench [each one's default]")
    a("--timeout", default="900", help="seconds per run before it is killed [%(default)s]")
    a("--host-bw", help="host memory read bandwidth in GB/s for the roofline [%s, assumed]"
      % ASSUMED_HOST_BW)
    a("--gpu-bw", help="GPU memory read bandwidth in GB/s for the roofline [%s, assumed]"
      % ASSUMED_GPU_BW)
    a("--vs-llamacpp", help="llama.cpp build folder (or its llama-bench): adds its rows")
    a("--quick", action="store_true", help="-n 16 --ks 0,1,3 (a quick device run)")
    a("--dry-run", action="store_true", help="print the commands, run nothing")
    return ap


def _positive_int(name, s, hi=None):
    if not re.fullmatch(r"[0-9]+", s or "") or int(s) <= 0 or (hi and int(s) > hi):
        raise PlanError("%s must be %s, got '%s'" % (
            name, "1..%d" % hi if hi else "a positive number", s))
    return int(s)


def _bandwidth(name, s):
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", s) or float(s) <= 0:
        raise PlanError("%s must be a positive number of GB/s, got '%s'" % (name, s))
    return s


def _list(name, s, check):
    if not re.fullmatch(r"[^,]+(,[^,]+)*", s or ""):
        raise PlanError("%s must be a comma-separated list, got '%s'" % (name, s))
    items = s.split(",")
    for i in items:
        if not check(i):
            raise PlanError("%s: '%s' is not %s" % (name, i, check.__doc__))
    if len(set(items)) != len(items):
        raise PlanError("%s: '%s' repeats an entry" % (name, s))
    return items


def _is_k(s):
    """a draft length (0..16)"""
    return re.fullmatch(r"[0-9]+", s) is not None and int(s) <= 16


def _is_placement(s):
    """cpu, hybrid or gpu"""
    return s in PLACEMENTS


def ge_regex(n):
    """llama.cpp -ot pattern for "block number >= n" (the blocks whose dense FFN stays on the
    CPU); n >= 100 is approximated by all three-digit blocks."""
    t, u = divmod(n, 10)
    if n < 10:
        return "([%d-9]|[1-9][0-9]+)" % u
    if n < 100:
        if t < 9:
            return "(%d[%d-9]|[%d-9][0-9]|[1-9][0-9][0-9]+)" % (t, u, t + 1)
        return "(%d[%d-9]|[1-9][0-9][0-9]+)" % (t, u)
    return "([1-9][0-9][0-9]+)"


def llama_split(place, hyb):
    return {"cpu": ["-ngl", "0"], "gpu": ["-ngl", "99"],
            "hybrid": ["-ngl", "99", "-ot", "blk\\.%s\\.ffn_(up|down|gate)=CPU" % ge_regex(hyb)]}[place]


def make_plan(argv, env=None, exe=None, exists=os.path.exists, isfile=os.path.isfile):
    """The checked settings and commands for the driver's options `argv` (paths relative to
    the repository root, the drivers' working directory). Raises PlanError on a bad option."""
    env = os.environ if env is None else env
    exe = (".exe" if os.name == "nt" else "") if exe is None else exe
    o = plan_parser().parse_args(argv)
    if o.quick:
        o.n_predict, o.ks = "16", "0,1,3"
    n = _positive_int("-n", o.n_predict)
    hyb = _positive_int("--hybrid-layers", o.hybrid_layers, 999)
    timeout = _positive_int("--timeout", o.timeout)
    if o.threads is not None:
        _positive_int("--threads", o.threads)
    ks = _list("--ks", o.ks, _is_k)
    places = _list("--placements", o.placements, _is_placement)
    bw_source = "given"
    if o.host_bw is None or o.gpu_bw is None:
        bw_source = "assumed (defaults; pass --host-bw/--gpu-bw)"
    host_bw = _bandwidth("--host-bw", o.host_bw or ASSUMED_HOST_BW)
    gpu_bw = _bandwidth("--gpu-bw", o.gpu_bw or ASSUMED_GPU_BW)
    for name in ("model", "bin", "out", "report", "vs_llamacpp"):
        v = getattr(o, name)
        if v is not None and (v == "" or re.search(r"[\t\r\n]", v)):
            raise PlanError("--%s: empty, or has a tab or line break: %r" % (
                name.replace("_", "-"), v))
    live = not o.dry_run
    b = o.bin
    if b is None:
        carried = ".dev-carry/bench/hybrid-run" + exe
        b = carried if isfile(carried) else "target/release/hybrid-run" + exe
    if live and not isfile(b):
        raise PlanError("no hybrid-run binary at %s (cargo build --release, or --bin)" % b)
    lbench = None
    if o.vs_llamacpp is not None:
        lc = o.vs_llamacpp
        if isfile(lc):
            lbench = lc
        elif exists(lc + "/bin/llama-bench" + exe):
            lbench = lc + "/bin/llama-bench" + exe
        else:
            lbench = lc + "/llama-bench" + exe
        if live and not isfile(lbench):
            raise PlanError("--vs-llamacpp: no llama-bench at %s" % lbench)
    cache = env.get("HYBRID_CACHE") or (
        (env.get("HOME") or env.get("USERPROFILE") or "~") + "/.cache/hybrid-run")
    synth = None
    model = o.model
    if model is None:
        model = cache + "/synthetic-27b-q4_k_m.gguf"
        if not isfile(model):
            synth = [b, "synth", "--preset", "27b", "--quant", "q4_k_m", "-o", model + ".part"]
    elif live and not isfile(model):
        raise PlanError("--model %s: no such file" % model)
    out = o.out
    runs = out + "/runs"
    report = o.report if o.report is not None else out + "/bench-27b-mtp"
    threads = [] if o.threads is None else ["-t", o.threads]
    gpu_layers = {"cpu": "0", "hybrid": str(hyb), "gpu": "all"}
    cmds = []
    for place in places:
        for prompt in PROMPTS:
            for k in ks:
                tag = "%s-%s-k%s" % (place, prompt, k)
                cmds.append((tag, "hybrid-run", place, prompt, k, [
                    b, "-m", model, "-f", "bench-scripts/prompts/%s.txt" % prompt,
                    "-n", str(n), "--temp", "0", "--seed", "0", "--draft", "mtp",
                    "--draft-n", k, "--gpu-layers", gpu_layers[place], "--no-display-prompt",
                    "--stats-json", "%s/%s.json" % (runs, tag)] + threads))
    if lbench is not None:
        for place in places:
            for prompt in PROMPTS:
                cmds.append(("llamacpp-%s-%s" % (place, prompt), "llama.cpp", place, prompt,
                             "0", [lbench, "-m", model, "-p", N_PROMPT % prompt, "-n", str(n),
                                   "-r", "1", "-fa", "1"] + llama_split(place, hyb)
                             + ["-o", "json"] + threads))
    return {
        "dry_run": o.dry_run, "model": model, "bin": b, "out": out, "runs": runs,
        "report": report, "timeout": str(timeout), "cache": cache, "synth": synth,
        "meta": [("n_predict", str(n)), ("threads", o.threads or "default"),
                 ("hybrid_layers", str(hyb)), ("host_bw_gbs", host_bw),
                 ("gpu_bw_gbs", gpu_bw), ("bw_source", bw_source)],
        "cmds": cmds,
    }


def plan_lines(p):
    """With --dry-run, the canonical listing both drivers print:
        SYNTH: ARGV              (only when the synthetic model is not there yet)
        RUN TAG: ARGV            (one per run, in run order)
        REPORT: RUNS PREFIX
    ARGV quoted with shlex.join. Otherwise tab-separated lines for the driver:
        SET KEY VALUE            (model bin out runs report timeout cache)
        META KEY VALUE           (lines for RUNS/meta.tsv)
        SYNTH FINAL-PATH ARGV... (write FINAL-PATH.part, then rename it)
        RUN TAG ENGINE PLACEMENT PROMPT K ARGV...
    No field is empty and none holds a tab or line break (the options are checked)."""
    if p["dry_run"]:
        lines = []
        if p["synth"]:
            lines.append("SYNTH: " + shlex.join(p["synth"]))
        for tag, _e, _p, _pr, _k, argv in p["cmds"]:
            lines.append("RUN %s: %s" % (tag, shlex.join(argv)))
        lines.append("REPORT: %s %s" % (shlex.quote(p["runs"]), shlex.quote(p["report"])))
        return lines
    lines = ["SET\t%s\t%s" % (k, p[k])
             for k in ("model", "bin", "out", "runs", "report", "timeout", "cache")]
    lines += ["META\t%s\t%s" % kv for kv in p["meta"]]
    if p["synth"]:
        lines.append("\t".join(["SYNTH", p["model"]] + p["synth"]))
    for tag, engine, place, prompt, k, argv in p["cmds"]:
        lines.append("\t".join(["RUN", tag, engine, place, prompt, k] + argv))
    return lines


def plan_main(argv):
    try:
        p = make_plan(argv)
    except PlanError as e:
        print("bench-27b-mtp: %s" % e, file=sys.stderr)
        return 2
    sys.stdout.write("".join(line + "\n" for line in plan_lines(p)))
    return 0


def main():
    if sys.argv[1:2] == ["plan"]:
        return plan_main(sys.argv[2:])
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
