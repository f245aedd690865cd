//! bench-scripts/bench-27b-mtp.{sh,ps1} and their shared half bench_27b_report.py: the run
//! matrix the dry run lists, option checking, the .ps1's options against the planner's, an
//! end-to-end .sh run on a tiny synthetic model with a stand-in llama-bench, and the report
//! on hand-made `--stats-json` files.
//!
//! Without `pwsh` on PATH the .ps1 is only checked statically (its parameters and how it
//! forwards them); the byte-for-byte comparison of the two dry runs prints
//! "skipped: pwsh not found".

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hybrid_run::cli::run_stats::RunStats;
use hybrid_run::generate::GenStats;
use hybrid_run::spec::SpecStats;
use serde_json::Value;

const SH: &str = "bench-scripts/bench-27b-mtp.sh";
const PS1: &str = "bench-scripts/bench-27b-mtp.ps1";
const SHARED: &str = "bench-scripts/bench_27b_report.py";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_sh(args: &[&str], cache: &Path) -> Output {
    Command::new("bash")
        .arg(root().join(SH))
        .args(args)
        .env("HYBRID_CACHE", cache)
        .output()
        .expect("bash runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Splits one line the way a POSIX shell would (what `shlex.join` quotes): blanks separate
/// words, '...' and "..." quote (shlex only puts `'` inside "").
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' | '"' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    cur.push(q);
                }
            }
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The dry run's `RUN tag: argv` lines as (tag, argv); other lines are returned apart.
fn parse_listing(text: &str) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let mut runs = Vec::new();
    let mut other = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("RUN ").and_then(|r| r.split_once(": ")) {
            Some((tag, argv)) => runs.push((tag.to_string(), shell_words(argv))),
            None => other.push(line.to_string()),
        }
    }
    (runs, other)
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The hybrid-run argv the issue asks for: greedy, MTP drafter with `--draft-n k`, the
/// placement as `--gpu-layers`, stats into OUT/runs/TAG.json.
fn expected_hybrid_argv(
    bin: &str,
    model: &str,
    prompt: &str,
    n: &str,
    k: &str,
    layers: &str,
    tag: &str,
) -> Vec<String> {
    let prompt_file = format!("bench-scripts/prompts/{prompt}.txt");
    let stats = format!("target/bench-27b-mtp/runs/{tag}.json");
    strs(&[
        bin,
        "-m",
        model,
        "-f",
        &prompt_file,
        "-n",
        n,
        "--temp",
        "0",
        "--seed",
        "0",
        "--draft",
        "mtp",
        "--draft-n",
        k,
        "--gpu-layers",
        layers,
        "--no-display-prompt",
        "--stats-json",
        &stats,
    ])
}

#[test]
fn the_sh_dry_run_lists_cpu_and_hybrid_with_mtp_off_and_draft_n_1_to_5_on_code_and_prose() {
    let cache = tempfile::tempdir().unwrap();
    let o = run_sh(
        &["--dry-run", "--model", "/models/q.gguf", "--bin", "/opt/hr"],
        cache.path(),
    );
    assert!(o.status.success(), "dry run failed: {}", stderr(&o));
    let (runs, other) = parse_listing(&stdout(&o));
    let mut want = Vec::new();
    for (place, layers) in [("cpu", "0"), ("hybrid", "18")] {
        for prompt in ["code", "prose"] {
            assert!(root()
                .join(format!("bench-scripts/prompts/{prompt}.txt"))
                .is_file());
            for k in 0..=5 {
                let tag = format!("{place}-{prompt}-k{k}");
                let argv = expected_hybrid_argv(
                    "/opt/hr",
                    "/models/q.gguf",
                    prompt,
                    "64",
                    &k.to_string(),
                    layers,
                    &tag,
                );
                want.push((tag, argv));
            }
        }
    }
    assert_eq!(runs, want);
    // A given model is never synthesized; the report line names the runs and the prefix.
    assert_eq!(
        other,
        vec!["REPORT: target/bench-27b-mtp/runs target/bench-27b-mtp/bench-27b-mtp".to_string()]
    );
}

#[test]
fn without_a_model_the_dry_run_synthesizes_the_27b_preset_into_the_cache_only_once() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let model = format!("{c}/synthetic-27b-q4_k_m.gguf");
    let o = run_sh(&["--dry-run", "--quick", "--bin", "hr"], cache.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let first = text.lines().next().unwrap();
    let synth = first.strip_prefix("SYNTH: ").expect("a SYNTH line first");
    let part = format!("{model}.part");
    assert_eq!(
        shell_words(synth),
        strs(&["hr", "synth", "--preset", "27b", "--quant", "q4_k_m", "-o", &part])
    );
    let (runs, _) = parse_listing(&text);
    assert_eq!(runs.len(), 2 * 2 * 3, "--quick: ks 0,1,3");
    assert!(runs.iter().all(|(_, a)| a[2] == model && a[6] == "16"));

    std::fs::write(&model, b"x").unwrap();
    let o = run_sh(&["--dry-run", "--quick", "--bin", "hr"], cache.path());
    assert!(o.status.success());
    assert!(!stdout(&o).contains("SYNTH"), "model present: no synthesis");
}

/// Whether llama.cpp's `-ot` pattern for `--hybrid-layers n` keeps exactly the FFN of blocks
/// n.. on the CPU (checked with Python's `re`, as a regex engine independent of ours).
fn ot_pattern_selects_blocks_from(pattern: &str, n: u32) {
    let (re, target) = pattern.rsplit_once('=').expect("PATTERN=CPU");
    assert_eq!(target, "CPU");
    let script = "import re,sys\np,n=sys.argv[1],int(sys.argv[2])\n\
                  bad=[b for b in range(0,300) for t in ('up','down','gate')\n\
                  if (re.fullmatch(p,'blk.%d.ffn_%s'%(b,t)) is not None)!=(b>=n)]\n\
                  bad+=[1 for t in ('blk.20.attn_q','blk.x.ffn_up') if re.fullmatch(p,t)]\n\
                  print(bad[:5]);sys.exit(1 if bad else 0)";
    let o = Command::new("python3")
        .args(["-c", script, re, &n.to_string()])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "-ot {pattern} for n={n}: wrong blocks {}",
        stdout(&o)
    );
}

#[test]
fn vs_llamacpp_adds_llama_bench_rows_with_the_same_split_and_threads() {
    let cache = tempfile::tempdir().unwrap();
    let lc = tempfile::tempdir().unwrap();
    std::fs::create_dir(lc.path().join("bin")).unwrap();
    std::fs::write(lc.path().join("bin/llama-bench"), b"").unwrap();
    let lcs = lc.path().to_str().unwrap();
    let lb = format!("{lcs}/bin/llama-bench");
    for hyb in [1u32, 5, 18, 40, 90, 99] {
        let h = hyb.to_string();
        let args = [
            "--dry-run",
            "--model",
            "m.gguf",
            "--bin",
            "hr",
            "-n",
            "7",
            "-t",
            "3",
            "--ks",
            "0,2",
            "--hybrid-layers",
            &h,
            "--vs-llamacpp",
            lcs,
        ];
        let o = run_sh(&args, cache.path());
        assert!(o.status.success(), "{}", stderr(&o));
        let (runs, _) = parse_listing(&stdout(&o));
        let ours: Vec<_> = runs
            .iter()
            .filter(|(t, _)| !t.starts_with("llamacpp-"))
            .collect();
        assert_eq!(ours.len(), 8);
        assert!(ours.iter().all(|(_, a)| a.ends_with(&strs(&["-t", "3"]))));
        let llama: Vec<_> = runs
            .iter()
            .filter(|(t, _)| t.starts_with("llamacpp-"))
            .collect();
        let tags: Vec<_> = llama.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            tags,
            [
                "llamacpp-cpu-code",
                "llamacpp-cpu-prose",
                "llamacpp-hybrid-code",
                "llamacpp-hybrid-prose"
            ]
        );
        for (tag, argv) in llama {
            let prompt = tag.rsplit('-').next().unwrap();
            let np = format!("<n_prompt:{prompt}>");
            let mut want = strs(&[
                &lb, "-m", "m.gguf", "-p", &np, "-n", "7", "-r", "1", "-fa", "1",
            ]);
            if tag.contains("-cpu-") {
                want.extend(strs(&["-ngl", "0"]));
            } else {
                want.extend(strs(&["-ngl", "99", "-ot"]));
                let ot = argv[want.len()].clone();
                ot_pattern_selects_blocks_from(&ot, hyb);
                want.push(ot);
            }
            want.extend(strs(&["-o", "json", "-t", "3"]));
            assert_eq!(argv, &want);
        }
    }
}

#[test]
fn bad_options_are_refused_with_exit_2_and_a_message_naming_the_option() {
    let cache = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["-n", "0"], "-n must be"),
        (&["-n", "many"], "-n must be"),
        (&["--ks", "1,,2"], "--ks"),
        (&["--ks", ""], "--ks"),
        (&["--ks", "1,x"], "--ks: 'x'"),
        (&["--ks", "1,1"], "repeats"),
        (&["--placements", "cpu,tpu"], "--placements: 'tpu'"),
        (&["--hybrid-layers", "1000"], "--hybrid-layers"),
        (&["--timeout", "0"], "--timeout"),
        (&["-t", "-2"], "--threads"),
        (&["--host-bw", "fast"], "--host-bw"),
        (&["--model", "a\tb"], "--model"),
        (&["--bogus"], "unrecognized arguments: --bogus"),
        (&["--model"], "--model"),
    ];
    for (args, needle) in cases {
        let mut a = vec!["--dry-run"];
        a.extend_from_slice(args);
        let o = run_sh(&a, cache.path());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("bench-27b-mtp: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(o.stdout.is_empty(), "{args:?} printed commands");
    }
    // Outside a dry run the model and binary must exist.
    let bin = env!("CARGO_BIN_EXE_hybrid-run");
    let o = run_sh(
        &["--model", "/nonexistent/m.gguf", "--bin", bin],
        cache.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--model /nonexistent/m.gguf: no such file"),
        "{}",
        stderr(&o)
    );
    let o = run_sh(&["--model", bin, "--bin", "/nonexistent/hr"], cache.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no hybrid-run binary at /nonexistent/hr"),
        "{}",
        stderr(&o)
    );
}

/// The planner's options as (short, long) from its --help.
fn planner_options() -> Vec<(Option<String>, String, bool)> {
    let o = Command::new("python3")
        .arg(root().join(SHARED))
        .args(["plan", "--help"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut opts = Vec::new();
    for line in stdout(&o).lines() {
        let t = line.trim_start();
        if !t.starts_with('-') || line.len() - t.len() != 2 {
            continue;
        }
        let spec = t.split("  ").next().unwrap();
        let mut short = None;
        let mut long = None;
        let mut takes_value = false;
        for part in spec.split(", ") {
            let mut w = part.split(' ');
            let name = w.next().unwrap().to_string();
            takes_value |= w.next().is_some();
            if name.starts_with("--") {
                long = Some(name);
            } else {
                short = Some(name);
            }
        }
        let long = long.expect("every option has a long name");
        if long != "--help" {
            opts.push((short, long, takes_value));
        }
    }
    opts
}

/// `NPredict` -> `--n-predict`: the documented mapping of .ps1 parameters to .sh options.
fn kebab(name: &str) -> String {
    let mut s = String::from("-");
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            s.push('-');
        }
        s.push(c.to_ascii_lowercase());
    }
    s
}

/// The .ps1's parameters as (name, alias, type) from its param(...) block.
fn ps1_params(src: &str) -> Vec<(String, Option<String>, String)> {
    let start = src.find("\nparam(").expect("a param block") + "\nparam(".len();
    let end = start + src[start..].find("\n)").expect("param block end");
    let mut out = Vec::new();
    for line in src[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let alias = line
            .split_once("[Alias(\"")
            .map(|(_, r)| r.split('"').next().unwrap().to_string());
        let (types, name) = line.rsplit_once('$').expect("a $Name");
        let types = types.rsplit_once(")]").map_or(types, |(_, t)| t);
        let ty = types
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .expect("[type]")
            .to_string();
        out.push((name.trim_end_matches(',').to_string(), alias, ty));
    }
    out
}

/// The .ps1's `$Options` table: parameter name -> the planner option it becomes.
fn ps1_forwarding(src: &str) -> Vec<(String, String)> {
    let start = src.find("$Options = [ordered]@{").expect("$Options table");
    let end = start + src[start..].find("\n}").unwrap();
    src[start..end]
        .lines()
        .skip(1)
        .flat_map(|l| l.split(';'))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

#[test]
fn the_ps1_takes_the_same_options_as_the_sh_and_forwards_each_to_the_shared_planner() {
    // Static: pwsh is not on the machines this was written on, so the .ps1 is read, not run.
    let ps1 = std::fs::read_to_string(root().join(PS1)).unwrap();
    let sh = std::fs::read_to_string(root().join(SH)).unwrap();
    // The .sh parses no option itself: every argument goes to the planner.
    assert_eq!(
        sh.matches("\"$SHARED\" plan \"$@\"").count(),
        2,
        "sh forwards \"$@\" for --dry-run and for the run"
    );
    assert!(
        !sh.contains("case \"$1\""),
        "sh has its own option parser again"
    );
    // The .ps1 hands the planner the same listing for -DryRun, and its plan for the run.
    assert!(
        ps1.contains("if ($DryRun) {\n    & $Py $Shared plan @PlanArgs\n    exit $LASTEXITCODE")
    );
    assert!(ps1.contains("$PlanText = @(& $Py $Shared plan @PlanArgs)"));

    let params = ps1_params(&ps1);
    let fwd = ps1_forwarding(&ps1);
    let planner = planner_options();
    let names: Vec<_> = params.iter().map(|p| p.0.clone()).collect();
    let fwd_names: Vec<_> = fwd.iter().map(|f| f.0.clone()).collect();
    assert_eq!(names, fwd_names, "every parameter is forwarded, in order");
    let mut longs: Vec<_> = fwd.iter().map(|f| f.1.clone()).collect();
    let mut planner_longs: Vec<_> = planner.iter().map(|p| p.1.clone()).collect();
    longs.sort();
    planner_longs.sort();
    assert_eq!(
        longs, planner_longs,
        "the .ps1 covers exactly the planner's options"
    );
    for ((name, alias, ty), (_, long)) in params.iter().zip(&fwd) {
        assert_eq!(
            &kebab(name),
            long,
            "-{name} is documented as {}",
            kebab(name)
        );
        let (short, _, takes_value) = planner.iter().find(|p| &p.1 == long).unwrap();
        assert_eq!(
            alias.as_ref().map(|a| format!("-{a}")),
            *short,
            "-{name}'s alias"
        );
        assert_eq!(
            ty == "switch",
            !takes_value,
            "-{name} is a switch iff {long} is a flag"
        );
        assert!(
            ["switch", "string", "string[]"].contains(&ty.as_str()),
            "-{name}: [{ty}] would check values the planner checks"
        );
    }
}

fn find_pwsh() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("pwsh"))
        .find(|p| p.is_file())
}

#[test]
fn the_ps1_dry_run_prints_the_same_bytes_as_the_sh_dry_run() {
    let Some(pwsh) = find_pwsh() else {
        println!("skipped: pwsh not found (the .ps1 is only checked statically)");
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let lc = tempfile::tempdir().unwrap();
    let lcs = lc.path().to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--dry-run"], &["-DryRun"]),
        (
            &[
                "--dry-run",
                "--quick",
                "-t",
                "4",
                "--vs-llamacpp",
                lcs,
                "--model",
                "m.gguf",
            ],
            &[
                "-DryRun",
                "-Quick",
                "-t",
                "4",
                "-VsLlamacpp",
                lcs,
                "-Model",
                "m.gguf",
            ],
        ),
        (
            &[
                "--dry-run",
                "--ks",
                "0,2",
                "--placements",
                "gpu,cpu",
                "--hybrid-layers",
                "7",
                "-n",
                "9",
                "--out",
                "o d",
                "--bin",
                "b",
            ],
            &[
                "-DryRun",
                "-Ks",
                "0,2",
                "-Placements",
                "gpu,cpu",
                "-HybridLayers",
                "7",
                "-NPredict",
                "9",
                "-Out",
                "o d",
                "-Bin",
                "b",
            ],
        ),
    ];
    for (sh_args, ps_args) in cases {
        let a = run_sh(sh_args, cache.path());
        let b = Command::new(&pwsh)
            .args(["-NoProfile", "-NonInteractive", "-File"])
            .arg(root().join(PS1))
            .args(*ps_args)
            .env("HYBRID_CACHE", cache.path())
            .output()
            .unwrap();
        assert!(
            a.status.success() && b.status.success(),
            "{}{}",
            stderr(&a),
            stderr(&b)
        );
        assert_eq!(stdout(&a), stdout(&b), "{sh_args:?} vs {ps_args:?}");
    }
}

/// A stand-in llama-bench: logs its argv and prints llama-bench's `-o json` shape.
fn fake_llama_bench(dir: &Path) -> PathBuf {
    let p = dir.join("llama-bench");
    let script = "#!/usr/bin/env bash\n\
        echo \"$*\" >> \"$(dirname \"$0\")/argv.log\"\n\
        while [ $# -gt 0 ]; do case $1 in -p) np=$2 ;; -n) ng=$2 ;; esac; shift; done\n\
        echo \"[{\\\"n_prompt\\\": $np, \\\"n_gen\\\": 0, \\\"avg_ts\\\": 70.0},\"\n\
        echo \" {\\\"n_prompt\\\": 0, \\\"n_gen\\\": $ng, \\\"avg_ts\\\": 8.0}]\"\n";
    std::fs::write(&p, script).unwrap();
    Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    p
}

fn have_matplotlib() -> bool {
    Command::new("python3")
        .args(["-c", "import matplotlib"])
        .status()
        .is_ok_and(|s| s.success())
}

/// PREFIX.png is a PNG when matplotlib is there; otherwise the report says why there is none.
fn check_plot(prefix: &Path, report_stderr: &str) {
    let png = prefix.with_extension("png");
    if have_matplotlib() {
        let bytes = std::fs::read(&png).expect("a plot");
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000);
    } else {
        assert!(!png.exists());
        assert!(
            report_stderr.contains("matplotlib missing"),
            "{report_stderr}"
        );
        println!("skipped: the plot half (matplotlib not installed; scripts/setup-python-test-deps.sh installs it)");
    }
}

fn rows(json_path: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&std::fs::read(json_path).unwrap()).unwrap();
    v["rows"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], tag: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["tag"] == tag)
        .unwrap_or_else(|| panic!("no row {tag}"))
}

#[test]
fn the_sh_runs_end_to_end_on_a_tiny_synthetic_model_with_a_stand_in_llama_bench() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_hybrid-run");
    let model = dir.path().join("tiny.gguf");
    let s = Command::new(bin)
        .args(["synth", "--preset", "tiny", "--quant", "q4_k_m", "-o"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", stderr(&s));
    let lb = fake_llama_bench(dir.path());
    let out = dir.path().join("out");
    let args = [
        "--bin",
        bin,
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--placements",
        "cpu,hybrid",
        "--hybrid-layers",
        "1",
        "--ks",
        "0,2",
        "-n",
        "6",
        "--timeout",
        "300",
        "--vs-llamacpp",
        lb.to_str().unwrap(),
    ];
    let o = run_sh(&args, dir.path());
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let prefix = out.join("bench-27b-mtp");
    let rows = rows(&prefix.with_extension("json"));
    assert_eq!(rows.len(), 2 * 2 * 2 + 4);
    let md = std::fs::read_to_string(prefix.with_extension("md")).unwrap();
    for r in &rows {
        let tag = r["tag"].as_str().unwrap();
        assert!(
            md.contains(&format!("| {tag} |")),
            "{tag} missing from the table"
        );
        assert_eq!(r["error"], false, "{tag}: {}", r["notes"]);
        if r["engine"] == "hybrid-run" {
            assert_eq!(r["decode_tokens"], 6, "{tag}");
            let want = if r["k"] == 0 {
                Value::Null
            } else {
                Value::Bool(true)
            };
            assert_eq!(
                r["text_matches_k0"], want,
                "{tag}: greedy tokens of k>0 equal k0's"
            );
            let ratio = r["decode_tps"].as_f64().unwrap() / 8.0;
            assert!(
                (r["vs_llamacpp"].as_f64().unwrap() - ratio).abs() < 1e-9,
                "{tag}"
            );
        } else {
            assert_eq!(r["decode_tps"], 8.0);
        }
    }
    // llama-bench got the MTP-off run's prompt length, and the hybrid split.
    let log = std::fs::read_to_string(dir.path().join("argv.log")).unwrap();
    for prompt in ["code", "prose"] {
        let np = row(&rows, &format!("cpu-{prompt}-k0"))["prompt_tokens"]
            .as_u64()
            .unwrap();
        assert!(np > 10);
        let pat = format!("-p {np} -n 6 ");
        assert_eq!(log.matches(&pat).count(), 2, "{prompt}: {log}");
    }
    assert!(
        log.contains("-ngl 99 -ot blk\\.([1-9]|[1-9][0-9]+)\\.ffn_(up|down|gate)=CPU"),
        "{log}"
    );
    check_plot(&prefix, &stderr(&o));
}

fn stats(
    n_prompt: usize,
    n_decode: usize,
    decode_ms: f64,
    spec: Option<(usize, f64)>,
    tokens: &[u32],
) -> RunStats {
    RunStats {
        gen: GenStats {
            n_prompt,
            n_decode,
            prompt_ms: 1000.0,
            decode_ms,
            prompt_tps: n_prompt as f64,
            decode_tps: n_decode as f64 * 1000.0 / decode_ms,
            n_threads: 4,
            stop: "n_predict".into(),
            spec: spec.map(|(steps, acceptance)| SpecStats {
                drafter: "mtp".into(),
                draft_n: 2,
                steps,
                acceptance,
                tokens_per_step: n_decode as f64 / steps as f64,
                ..Default::default()
            }),
        },
        placement: "cpu".into(),
        n_layer: 4,
        n_gpu_ffn_layers: 0,
        host_bytes_per_token: 8_000_000_000,
        gpu_bytes_per_token: 0,
        spec_skipped: false,
        peak_rss_bytes: Some(3 << 30),
        gpu_mem_used_bytes: None,
        gpu_name: None,
        tokens: tokens.to_vec(),
        pcie_share: None,
    }
}

#[test]
fn the_report_computes_rows_from_stats_json_and_marks_text_mismatches_and_failed_runs_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    std::fs::create_dir(&runs).unwrap();
    let meta =
        "date\t2026-01-01T00:00Z\nmodel\t/m/q.gguf\nmodel_bytes\t123\nn_predict\t16\nthreads\t4\n\
                hybrid_layers\t18\nhost_bw_gbs\t100\ngpu_bw_gbs\t1000\nbw_source\tgiven\n";
    std::fs::write(runs.join("meta.tsv"), meta).unwrap();
    let ok = [5u32, 6, 7];
    let write = |tag: &str, s: RunStats, text: &str| {
        s.write(&runs.join(format!("{tag}.json"))).unwrap();
        std::fs::write(runs.join(format!("{tag}.txt")), text).unwrap();
    };
    write("cpu-code-k0", stats(140, 16, 1600.0, None, &ok), "a b c");
    write(
        "cpu-code-k1",
        stats(140, 16, 800.0, Some((8, 1.0)), &ok),
        "a b C",
    ); // same ids, other text
    write(
        "cpu-code-k2",
        stats(140, 16, 400.0, Some((8, 0.5)), &[5, 6, 8]),
        "a b d",
    );
    write(
        "cpu-code-k3",
        stats(140, 16, 500.0, Some((4, 0.75)), &ok),
        "a b c",
    );
    // Same text, other token ids (a synthetic model's text can be empty): still a mismatch.
    write(
        "cpu-code-k4",
        stats(140, 16, 500.0, Some((4, 0.75)), &[5, 6, 9]),
        "a b c",
    );
    let bench = r#"[{"n_prompt": 140, "n_gen": 0, "avg_ts": 70.0}, {"n_prompt": 0, "n_gen": 16, "avg_ts": 8.0}]"#;
    std::fs::write(runs.join("llamacpp-cpu-code.json"), bench).unwrap();
    let tsv = [
        "cpu-code-k0\thybrid-run\tcpu\tcode\t0\t0\t2.5\t0\t\tcpu-code-k0.json\tcpu-code-k0.txt",
        "cpu-code-k1\thybrid-run\tcpu\tcode\t1\t0\t2.0\t0\t\tcpu-code-k1.json\tcpu-code-k1.txt",
        "cpu-code-k2\thybrid-run\tcpu\tcode\t2\t0\t2.0\t0\t\tcpu-code-k2.json\tcpu-code-k2.txt",
        "cpu-code-k3\thybrid-run\tcpu\tcode\t3\t0\t2.0\t0\t\tcpu-code-k3.json\tcpu-code-k3.txt",
        "cpu-code-k4\thybrid-run\tcpu\tcode\t4\t0\t2.0\t0\t\tcpu-code-k4.json\tcpu-code-k4.txt",
        "hybrid-code-k0\thybrid-run\thybrid\tcode\t0\t1\t0.3\t0\t4100\t\thybrid-code-k0.txt",
        "hybrid-code-k1\thybrid-run\thybrid\tcode\t1\t124\t900.0\t1\t4200\t\thybrid-code-k1.txt",
        "llamacpp-cpu-code\tllama.cpp\tcpu\tcode\t0\t0\t3.0\t0\t\tllamacpp-cpu-code.json\t",
    ];
    std::fs::write(runs.join("runs.tsv"), tsv.join("\n") + "\n").unwrap();
    let prefix = dir.path().join("rep");
    let o = Command::new("python3")
        .arg(root().join(SHARED))
        .arg(&runs)
        .arg(&prefix)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "error rows make exit 1: {}",
        stderr(&o)
    );
    let rows = rows(&prefix.with_extension("json"));
    assert_eq!(rows.len(), 8);
    let close = |v: &Value, want: f64| (v.as_f64().unwrap_or(f64::NAN) - want).abs() < 1e-9;

    let k0 = row(&rows, "cpu-code-k0");
    assert!(close(&k0["decode_tps"], 10.0) && close(&k0["step_ms"], 100.0));
    assert!(
        close(&k0["roofline_tps"], 12.5),
        "8 GB per token at 100 GB/s"
    );
    assert!(close(&k0["roofline_frac"], 0.8) && close(&k0["vs_llamacpp"], 1.25));
    assert!(close(&k0["peak_rss_mib"], 3072.0) && k0["error"] == false);
    let k1 = row(&rows, "cpu-code-k1");
    assert_eq!(
        (k1["text_matches_k0"].clone(), k1["error"].clone()),
        (Value::Bool(false), Value::Bool(true))
    );
    let k2 = row(&rows, "cpu-code-k2");
    assert_eq!(
        (k2["text_matches_k0"].clone(), k2["error"].clone()),
        (Value::Bool(false), Value::Bool(true))
    );
    assert!(
        close(&k2["step_ms"], 50.0)
            && close(&k2["acceptance"], 0.5)
            && close(&k2["tokens_per_step"], 2.0)
    );
    assert!(k2["notes"]
        .to_string()
        .contains("text differs from the MTP-off run"));
    let k3 = row(&rows, "cpu-code-k3");
    assert_eq!(
        (k3["text_matches_k0"].clone(), k3["error"].clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    let k4 = row(&rows, "cpu-code-k4");
    assert_eq!(
        (k4["text_matches_k0"].clone(), k4["error"].clone()),
        (Value::Bool(false), Value::Bool(true))
    );
    let failed = row(&rows, "hybrid-code-k0");
    assert_eq!(failed["error"], true);
    assert!(failed["notes"]
        .to_string()
        .contains("error: no stats (exit 1)"));
    assert!(close(&failed["peak_vram_mib"], 4100.0));
    let slow = row(&rows, "hybrid-code-k1");
    assert_eq!(
        (slow["timed_out"].clone(), slow["error"].clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    let l = row(&rows, "llamacpp-cpu-code");
    assert!(
        close(&l["decode_tps"], 8.0)
            && close(&l["prefill_tps"], 70.0)
            && close(&l["roofline_frac"], 0.64)
    );

    let md = std::fs::read_to_string(prefix.with_extension("md")).unwrap();
    assert_eq!(
        stdout(&o).lines().next(),
        md.lines().next(),
        "the table is printed too"
    );
    let line = |tag: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {tag} |")))
            .unwrap()
            .to_string()
    };
    assert!(
        line("cpu-code-k2").contains("| **NO** | ERROR: ")
            && line("cpu-code-k2").contains("| 50% |")
    );
    assert!(line("cpu-code-k3").contains("| yes |") && !line("cpu-code-k3").contains("ERROR"));
    assert!(line("hybrid-code-k0").contains("ERROR: error: no stats (exit 1)"));
    assert!(
        line("cpu-code-k0").contains("| 10.00 |") && line("cpu-code-k0").contains("| 80% | 1.25 |")
    );
    assert!(md.contains("100 GB/s") && md.contains("bandwidths given"));
    check_plot(&prefix, &stderr(&o));
}

/// Parses a PowerShell file with tree-sitter-powershell (Python); None when that grammar is not
/// installed. Some(errors) lists the ERROR/MISSING nodes as "row:col text".
fn powershell_syntax_errors(src: &str) -> Option<Vec<String>> {
    let script = "import sys\n\
        try:\n    import tree_sitter, tree_sitter_powershell as tsp\n\
        except ImportError:\n    sys.exit(3)\n\
        p = tree_sitter.Parser(tree_sitter.Language(tsp.language()))\n\
        t = p.parse(sys.stdin.buffer.read())\n\
        def walk(n):\n    if n.type == 'ERROR' or n.is_missing:\n        \
        print('%d:%d %r' % (n.start_point[0] + 1, n.start_point[1], n.text[:60]))\n    \
        for c in n.children:\n        walk(c)\n\
        walk(t.root_node)\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(src.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    if o.status.code() == Some(3) {
        return None;
    }
    assert!(o.status.success(), "parser failed");
    Some(stdout(&o).lines().map(str::to_string).collect())
}

#[test]
fn the_ps1_parses_as_powershell() {
    // Syntax only (tree-sitter's grammar, not PowerShell itself): the .ps1 has never run.
    let Some(errors) = powershell_syntax_errors("function f { if ($x -eq 1) { 'a' }\n") else {
        println!("skipped: tree-sitter-powershell not installed (scripts/setup-python-test-deps.sh installs it)");
        return;
    };
    assert!(!errors.is_empty(), "the grammar must flag a missing brace");
    let ps1 = std::fs::read_to_string(root().join(PS1)).unwrap();
    assert_eq!(
        powershell_syntax_errors(&ps1),
        Some(vec![]),
        "{PS1} has syntax errors"
    );
}
