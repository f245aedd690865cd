<#
.SYNOPSIS
Decode benchmark of a Qwen3.5/3.6-27B GGUF with and without MTP speculation, CPU-only and
hybrid (GPU + CPU). The PowerShell twin of bench-27b-mtp.sh: same options, same commands,
same output (the table, JSON and plot come from bench_27b_report.py in both).

.DESCRIPTION
Options (bash name in brackets; defaults as in bench-27b-mtp.sh):
  -Model PATH        [--model]          GGUF model; default: the synthetic 27B preset, written
                                        once into $env:HYBRID_CACHE (default ~/.cache/hybrid-run)
  -Bin PATH          [--bin]            hybrid-run binary
  -Out DIR           [--out]            per-run files                   (target/bench-27b-mtp)
  -Report PREFIX     [--report]         PREFIX.md/.json/.png            (OUT/bench-27b-mtp)
  -NPredict N        [-n, --n-predict]  decode tokens per run           (64)
  -Ks LIST           [--ks]             draft lengths, 0 = MTP off      (0,1,2,3,4,5)
  -Placements LIST   [--placements]     cpu, hybrid, gpu                (cpu,hybrid)
  -HybridLayers N    [--hybrid-layers]  dense FFN of layers 0..N-1 on the GPU (18)
  -Threads N         [-t, --threads]    CPU threads                     (each binary's default)
  -Timeout S         [--timeout]        seconds per run                 (900)
  -HostBw GB/s       [--host-bw]        host read bandwidth, roofline   (103, assumed)
  -GpuBw GB/s        [--gpu-bw]         GPU read bandwidth, roofline    (3350, assumed)
  -VsLlamacpp PATH   [--vs-llamacpp]    llama.cpp build folder or its llama-bench
  -Quick             [--quick]          -NPredict 16 -Ks 0,1,3
  -DryRun            [--dry-run]        print the commands, run nothing
#>
[CmdletBinding()]
param(
    [string]$Model = "",
    [string]$Bin = "",
    [string]$Out = "target/bench-27b-mtp",
    [string]$Report = "",
    [Alias("n")][int]$NPredict = 64,
    [string]$Ks = "0,1,2,3,4,5",
    [string]$Placements = "cpu,hybrid",
    [int]$HybridLayers = 18,
    [Alias("t")][string]$Threads = "",
    [int]$Timeout = 900,
    [string]$HostBw = "",
    [string]$GpuBw = "",
    [string]$VsLlamacpp = "",
    [switch]$Quick,
    [switch]$DryRun
)
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)

function Die([string]$msg) { [Console]::Error.WriteLine("bench-27b-mtp: $msg"); exit 2 }
function Say([string]$msg) { [Console]::Out.WriteLine($msg) }

if ($Quick) { $NPredict = 16; $Ks = "0,1,3" }
if ($NPredict -le 0) { Die "-n must be a positive number, got '$NPredict'" }
if ($HybridLayers -le 0 -or $HybridLayers -ge 1000) { Die "--hybrid-layers must be 1..999, got '$HybridLayers'" }
if ($Threads -ne "" -and $Threads -notmatch '^[0-9]+$') { Die "--threads must be a number, got '$Threads'" }
$BwSource = "given"
if ($HostBw -eq "") { $HostBw = "103"; $BwSource = "assumed (defaults; pass --host-bw/--gpu-bw)" }
if ($GpuBw -eq "") { $GpuBw = "3350"; $BwSource = "assumed (defaults; pass --host-bw/--gpu-bw)" }
$KList = @($Ks.Split(","))
$PList = @($Placements.Split(","))
foreach ($k in $KList) { if ($k -notmatch '^[0-9]+$') { Die "--ks: '$k' is not a number" } }
foreach ($p in $PList) { if (@("cpu", "hybrid", "gpu") -notcontains $p) { Die "--placements: '$p' is not cpu, hybrid or gpu" } }
$Prompts = @("code", "prose")
$Exe = if ($IsWindows -or $env:OS -eq "Windows_NT") { ".exe" } else { "" }

if ($Bin -eq "") {
    if (Test-Path ".dev-carry/bench/hybrid-run$Exe") { $Bin = ".dev-carry/bench/hybrid-run$Exe" }
    else { $Bin = "target/release/hybrid-run$Exe" }
}
if (-not $DryRun -and -not (Test-Path $Bin)) { Die "no hybrid-run binary at $Bin (cargo build --release, or --bin)" }
$LBench = ""
if ($VsLlamacpp -ne "") {
    if (Test-Path $VsLlamacpp -PathType Leaf) { $LBench = $VsLlamacpp }
    elseif (Test-Path "$VsLlamacpp/bin/llama-bench$Exe") { $LBench = "$VsLlamacpp/bin/llama-bench$Exe" }
    else { $LBench = "$VsLlamacpp/llama-bench$Exe" }
    if (-not $DryRun -and -not (Test-Path $LBench)) { Die "--vs-llamacpp: no llama-bench at $LBench" }
}
if ($Report -eq "") { $Report = "$Out/bench-27b-mtp" }
$Home_ = if ($env:HOME) { $env:HOME } else { $env:USERPROFILE }
$Cache = if ($env:HYBRID_CACHE) { $env:HYBRID_CACHE } else { "$Home_/.cache/hybrid-run" }
$Synth = $false
if ($Model -eq "") {
    $Model = "$Cache/synthetic-27b-q4_k_m.gguf"
    if (-not (Test-Path $Model)) { $Synth = $true }
} elseif (-not $DryRun -and -not (Test-Path $Model)) { Die "--model ${Model}: no such file" }

function GpuLayers([string]$p) { switch ($p) { "cpu" { "0" } "hybrid" { "$HybridLayers" } "gpu" { "all" } } }
# llama.cpp -ot pattern for "block number >= N" (the blocks whose dense FFN stays on the CPU).
function GeRegex([int]$n) {
    $t = [math]::Floor($n / 10); $u = $n % 10
    if ($n -lt 10) { return "([$u-9]|[1-9][0-9]+)" }
    if ($n -lt 100) {
        if ($t -lt 9) { return "($t[$u-9]|[$($t + 1)-9][0-9]|[1-9][0-9][0-9]+)" }
        return "($t[$u-9]|[1-9][0-9][0-9]+)"
    }
    return "([1-9][0-9][0-9]+)"
}
function LlamaSplit([string]$p) {
    switch ($p) {
        "cpu" { @("-ngl", "0") }
        "gpu" { @("-ngl", "99") }
        "hybrid" { @("-ngl", "99", "-ot", "blk\.$(GeRegex $HybridLayers)\.ffn_(up|down|gate)=CPU") }
    }
}

# Quotes one argument for ProcessStartInfo.Arguments (Windows command-line rules).
function Quote([string]$a) {
    if ($a -ne "" -and $a -notmatch '[\s"]') { return $a }
    return '"' + ($a -replace '(\\*)"', '$1$1\"' -replace '(\\+)$', '$1$1') + '"'
}

$script:RC = 0; $script:Wall = "0"; $script:TimedOut = 0; $script:Vram = ""
# Runs a command with the timeout, sampling the GPU's memory; sets RC, Wall, TimedOut, Vram.
function Timed([string]$stdout, [string]$stderr, [string[]]$cmd) {
    $smi = Get-Command nvidia-smi -ErrorAction SilentlyContinue
    $vfile = "$Out/runs/vram.tmp"; $sampler = $null
    if ($smi) {
        $sampler = Start-Process -FilePath $smi.Source -PassThru -NoNewWindow `
            -ArgumentList "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "200" `
            -RedirectStandardOutput $vfile -RedirectStandardError "$vfile.err"
    }
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $args_ = ($cmd[1..($cmd.Length - 1)] | ForEach-Object { Quote $_ }) -join " "
    $p = Start-Process -FilePath $cmd[0] -ArgumentList $args_ -PassThru -NoNewWindow `
        -RedirectStandardOutput $stdout -RedirectStandardError $stderr
    $script:TimedOut = 0
    if (-not $p.WaitForExit($Timeout * 1000)) {
        $p.Kill($true); $p.WaitForExit(); $script:TimedOut = 1; $script:RC = 124
    } else { $script:RC = $p.ExitCode }
    $script:Wall = "{0:F2}" -f $sw.Elapsed.TotalSeconds
    $script:Vram = ""
    if ($sampler) {
        Stop-Process -Id $sampler.Id -ErrorAction SilentlyContinue; $sampler.WaitForExit()
        $vals = Get-Content $vfile -ErrorAction SilentlyContinue | Where-Object { $_ -match '^[0-9]+' } | ForEach-Object { [int]($_.Trim()) }
        if ($vals) { $script:Vram = "$(($vals | Measure-Object -Maximum).Maximum)" }
        Remove-Item "$vfile.err" -ErrorAction SilentlyContinue
    }
}
function Record([string[]]$cols) { Add-Content -Path "$Out/runs/runs.tsv" -Value ($cols -join "`t") }

# ---- synthesis --------------------------------------------------------------------------
if ($Synth) {
    Say "SYNTH: $Bin synth --preset 27b --quant q4_k_m -o $Model"
    if (-not $DryRun) {
        New-Item -ItemType Directory -Force -Path $Cache | Out-Null
        $tmp = "$Model.part"
        & $Bin synth --preset 27b --quant q4_k_m -o $tmp | Out-Null
        if ($LASTEXITCODE -ne 0) { Die "synth failed" }
        Move-Item -Force $tmp $Model
    }
}

if (-not $DryRun) {
    if (Test-Path "$Out/runs") { Remove-Item -Recurse -Force "$Out/runs" }
    New-Item -ItemType Directory -Force -Path "$Out/runs" | Out-Null
    $rdir = Split-Path -Parent $Report
    if ($rdir) { New-Item -ItemType Directory -Force -Path $rdir | Out-Null }
    Set-Content -Path "$Out/runs/runs.tsv" -Value $null
    $gpuName = "none"
    if (Get-Command nvidia-smi -ErrorAction SilentlyContinue) {
        $g = & nvidia-smi --query-gpu=name --format=csv,noheader 2>$null | Select-Object -First 1
        if ($g) { $gpuName = $g }
    }
    $version = (& $Bin --version 2>$null | Select-Object -First 1)
    $os = [Runtime.InteropServices.RuntimeInformation]::OSDescription
    $arch = [Runtime.InteropServices.RuntimeInformation]::OSArchitecture
    $meta = @(
        "date`t$((Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mmZ'))",
        "model`t$Model",
        "model_bytes`t$((Get-Item $Model).Length)",
        "host`t$os $arch, $([Environment]::ProcessorCount) CPUs",
        "gpu`t$gpuName",
        "version`t$version",
        "n_predict`t$NPredict",
        "threads`t$(if ($Threads -ne '') { $Threads } else { 'default' })",
        "hybrid_layers`t$HybridLayers",
        "host_bw_gbs`t$HostBw",
        "gpu_bw_gbs`t$GpuBw",
        "bw_source`t$BwSource"
    )
    Set-Content -Path "$Out/runs/meta.tsv" -Value $meta
}

# ---- hybrid-run matrix ------------------------------------------------------------------
foreach ($place in $PList) {
    foreach ($prompt in $Prompts) {
        foreach ($k in $KList) {
            $tag = "$place-$prompt-k$k"
            $cmd = @($Bin, "-m", $Model, "-f", "bench-scripts/prompts/$prompt.txt", "-n", "$NPredict",
                "--temp", "0", "--seed", "0", "--draft", "mtp", "--draft-n", "$k",
                "--gpu-layers", (GpuLayers $place), "--no-display-prompt",
                "--stats-json", "$Out/runs/$tag.json")
            if ($Threads -ne "") { $cmd += @("-t", $Threads) }
            Say "RUN ${tag}: $($cmd -join ' ')"
            if ($DryRun) { continue }
            Remove-Item "$Out/runs/$tag.json" -ErrorAction SilentlyContinue
            Timed "$Out/runs/$tag.txt" "$Out/runs/$tag.err" $cmd
            $stats = if (Test-Path "$Out/runs/$tag.json") { "$tag.json" } else { "" }
            Record @($tag, "hybrid-run", $place, $prompt, $k, $script:RC, $script:Wall, $script:TimedOut, $script:Vram, $stats, "$tag.txt")
            Say "  rc $($script:RC), $($script:Wall) s$(if ($script:TimedOut) { ', TIMED OUT' })"
        }
    }
}

# ---- llama.cpp rows (same model, same split, same prompt length) -----------------------
if ($LBench -ne "") {
    foreach ($place in $PList) {
        foreach ($prompt in $Prompts) {
            $tag = "llamacpp-$place-$prompt"
            $np = "<n_prompt:$prompt>"
            if (-not $DryRun) {
                $np = ""
                foreach ($f in (Get-ChildItem "$Out/runs" -Filter "*-$prompt-k0.json" -ErrorAction SilentlyContinue)) {
                    try { $np = "$((Get-Content -Raw $f.FullName | ConvertFrom-Json).n_prompt)"; if ($np) { break } } catch { $np = "" }
                }
                if ($np -eq "") { Say "  ${tag}: no MTP-off run of this prompt to take its length from; skipped"; continue }
            }
            $cmd = @($LBench, "-m", $Model, "-p", $np, "-n", "$NPredict", "-r", "1", "-fa", "1") + @(LlamaSplit $place) + @("-o", "json")
            if ($Threads -ne "") { $cmd += @("-t", $Threads) }
            Say "RUN ${tag}: $($cmd -join ' ')"
            if ($DryRun) { continue }
            Timed "$Out/runs/$tag.json" "$Out/runs/$tag.err" $cmd
            Record @($tag, "llama.cpp", $place, $prompt, "0", $script:RC, $script:Wall, $script:TimedOut, $script:Vram, "$tag.json", "")
            Say "  rc $($script:RC), $($script:Wall) s$(if ($script:TimedOut) { ', TIMED OUT' })"
        }
    }
}

Say "REPORT: python3 bench-scripts/bench_27b_report.py $Out/runs $Report"
if ($DryRun) { exit 0 }
Remove-Item "$Out/runs/vram.tmp" -ErrorAction SilentlyContinue
$py = if (Get-Command python3 -ErrorAction SilentlyContinue) { "python3" } else { "python" }
& $py bench-scripts/bench_27b_report.py "$Out/runs" $Report
exit $LASTEXITCODE
