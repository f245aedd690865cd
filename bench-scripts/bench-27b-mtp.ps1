#Requires -Version 7.0
<#
.SYNOPSIS
Decode benchmark of a Qwen3.5/3.6-27B GGUF with and without MTP speculation, CPU-only and
hybrid (GPU + CPU). The PowerShell twin of bench-27b-mtp.sh: same options, same commands,
same output.

.DESCRIPTION
Both scripts hand their options to `bench_27b_report.py plan`, which checks them, resolves
the defaults and lists the commands; this script runs that list and makes the table, JSON
and plot with `bench_27b_report.py RUNS PREFIX`. Each option is the .sh's long option in
PascalCase (-NPredict is --n-predict, -VsLlamacpp is --vs-llamacpp); the defaults are the
planner's (`python3 bench-scripts/bench_27b_report.py plan --help`):
  -Model PATH        GGUF model; default: the synthetic 27B preset, written once into
                     $env:HYBRID_CACHE (default ~/.cache/hybrid-run)
  -Bin PATH          hybrid-run binary
  -Out DIR           per-run files                   (target/bench-27b-mtp)
  -Report PREFIX     PREFIX.md/.json/.png            (OUT/bench-27b-mtp)
  -NPredict N, -n N  decode tokens per run           (64)
  -Ks LIST           draft lengths, 0 = MTP off      (0,1,2,3,4,5)
  -Placements LIST   cpu, hybrid, gpu                (cpu,hybrid)
  -HybridLayers N    dense FFN of layers 0..N-1 on the GPU (18)
  -Threads N, -t N   CPU threads                     (each binary's default)
  -Timeout S         seconds per run                 (900)
  -HostBw GB/s       host read bandwidth, roofline   (103, assumed)
  -GpuBw GB/s        GPU read bandwidth, roofline    (3350, assumed)
  -VsLlamacpp PATH   llama.cpp build folder or its llama-bench
  -Quick             -NPredict 16 -Ks 0,1,3
  -DryRun            print the commands, run nothing (the same bytes as the .sh's --dry-run)
Needs PowerShell 7 and Python 3 (matplotlib for the plot only).
#>
[CmdletBinding()]
param(
    [string]$Model,
    [string]$Bin,
    [string]$Out,
    [string]$Report,
    [Alias("n")][string]$NPredict,
    [string[]]$Ks,
    [string[]]$Placements,
    [string]$HybridLayers,
    [Alias("t")][string]$Threads,
    [string]$Timeout,
    [string]$HostBw,
    [string]$GpuBw,
    [string]$VsLlamacpp,
    [switch]$Quick,
    [switch]$DryRun
)
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)
$Py = if ($env:PYTHON) { $env:PYTHON } elseif (Get-Command python3 -ErrorAction SilentlyContinue) { "python3" } else { "python" }
$Shared = "bench-scripts/bench_27b_report.py"

function Die([string]$msg) { [Console]::Error.WriteLine("bench-27b-mtp: $msg"); exit 2 }

# This script's parameters and the planner's options they become (-Ks 0,1,3 unquoted is an
# array in PowerShell: joined back with commas).
$Options = [ordered]@{
    Model = "--model"; Bin = "--bin"; Out = "--out"; Report = "--report"
    NPredict = "--n-predict"; Ks = "--ks"; Placements = "--placements"
    HybridLayers = "--hybrid-layers"; Threads = "--threads"; Timeout = "--timeout"
    HostBw = "--host-bw"; GpuBw = "--gpu-bw"; VsLlamacpp = "--vs-llamacpp"
    Quick = "--quick"; DryRun = "--dry-run"
}
$PlanArgs = @()
foreach ($name in $Options.Keys) {
    if (-not $PSBoundParameters.ContainsKey($name)) { continue }
    $v = $PSBoundParameters[$name]
    if ($v -is [switch]) { if ($v.IsPresent) { $PlanArgs += $Options[$name] } }
    else { $PlanArgs += @($Options[$name], (@($v) -join ",")) }
}

# -DryRun: the planner prints everything.
if ($DryRun) {
    & $Py $Shared plan @PlanArgs
    exit $LASTEXITCODE
}

$PlanText = @(& $Py $Shared plan @PlanArgs)
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
$Set = @{}; $Meta = @(); $Synth = @(); $Runs = @()
foreach ($line in $PlanText) {
    $f = $line.Split("`t")
    switch ($f[0]) {
        "SET" { $Set[$f[1]] = $f[2] }
        "META" { $Meta += "$($f[1])`t$($f[2])" }
        "SYNTH" { $Synth = $f[1..($f.Length - 1)] }
        "RUN" { $Runs += , $f }
        default { Die "the planner printed an unknown line: $line" }
    }
}
$BinPath = $Set["bin"]; $ModelPath = $Set["model"]; $RunsDir = $Set["runs"]
$ReportPrefix = $Set["report"]; $TimeoutS = [int]$Set["timeout"]

# Quotes one argument for ProcessStartInfo.Arguments (Windows command-line rules, which .NET
# also applies on Linux and macOS).
function Quote([string]$a) {
    if ($a -ne "" -and $a -notmatch '[\s"]') { return $a }
    return '"' + ($a -replace '(\\*)"', '$1$1\"' -replace '(\\+)$', '$1$1') + '"'
}

$script:RC = 0; $script:Wall = "0"; $script:TimedOut = 0; $script:Vram = ""
# Runs a command with the timeout, sampling the GPU's memory; sets RC, Wall, TimedOut, Vram.
function Timed([string]$stdout, [string]$stderr, [string[]]$cmd) {
    $smi = Get-Command nvidia-smi -ErrorAction SilentlyContinue
    $vfile = "$RunsDir/vram.tmp"; $sampler = $null
    if ($smi) {
        $sampler = Start-Process -FilePath $smi.Source -PassThru -NoNewWindow `
            -ArgumentList "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "200" `
            -RedirectStandardOutput $vfile -RedirectStandardError "$vfile.err"
    }
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $argLine = ($cmd[1..($cmd.Length - 1)] | ForEach-Object { Quote $_ }) -join " "
    $p = Start-Process -FilePath $cmd[0] -ArgumentList $argLine -PassThru -NoNewWindow `
        -RedirectStandardOutput $stdout -RedirectStandardError $stderr
    $null = $p.Handle  # keeps ExitCode readable after exit (a known Start-Process quirk)
    $script:TimedOut = 0
    if (-not $p.WaitForExit($TimeoutS * 1000)) {
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
function Record([string[]]$cols) { Add-Content -Path "$RunsDir/runs.tsv" -Value ($cols -join "`t") }
# The prompt length of an MTP-off hybrid-run run of this prompt (llama-bench's -p); "" if none.
function NPrompt([string]$prompt) {
    foreach ($f in (Get-ChildItem $RunsDir -Filter "*-$prompt-k0.json" -ErrorAction SilentlyContinue)) {
        try { $np = "$((Get-Content -Raw $f.FullName | ConvertFrom-Json).n_prompt)"; if ($np) { return $np } } catch { }
    }
    return ""
}

# ---- synthesis (SYNTH FINAL ARGV...: the argv writes FINAL.part) --------------------------
if ($Synth.Length -gt 0) {
    $final = $Synth[0]; $cmd = $Synth[1..($Synth.Length - 1)]
    [Console]::Out.WriteLine("SYNTH: $($cmd -join ' ')")
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $final) | Out-Null
    $exe = $cmd[0]; $rest = @($cmd[1..($cmd.Length - 1)])
    & $exe @rest | Out-Null
    if ($LASTEXITCODE -ne 0) { Die "synth failed" }
    Move-Item -Force "$final.part" $final
}

if (Test-Path $RunsDir) { Remove-Item -Recurse -Force $RunsDir }
New-Item -ItemType Directory -Force -Path $RunsDir | Out-Null
$rdir = Split-Path -Parent $ReportPrefix
if ($rdir) { New-Item -ItemType Directory -Force -Path $rdir | Out-Null }
New-Item -ItemType File -Force -Path "$RunsDir/runs.tsv" | Out-Null
$gpuName = "none"
if (Get-Command nvidia-smi -ErrorAction SilentlyContinue) {
    $g = & nvidia-smi "--query-gpu=name" "--format=csv,noheader" 2>$null | Select-Object -First 1
    if ($g) { $gpuName = $g }
}
$version = (& $BinPath --version 2>$null | Select-Object -First 1)
$os = [Runtime.InteropServices.RuntimeInformation]::OSDescription
$arch = [Runtime.InteropServices.RuntimeInformation]::OSArchitecture
$lines = @(
    "date`t$((Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mmZ'))",
    "model`t$ModelPath",
    "model_bytes`t$((Get-Item $ModelPath).Length)",
    "host`t$os $arch, $([Environment]::ProcessorCount) CPUs",
    "gpu`t$gpuName",
    "version`t$version"
) + $Meta
Set-Content -Path "$RunsDir/meta.tsv" -Value $lines

# ---- the runs (RUN TAG ENGINE PLACEMENT PROMPT K ARGV...) -----------------------------
foreach ($f in $Runs) {
    $tag = $f[1]; $engine = $f[2]; $place = $f[3]; $prompt = $f[4]; $k = $f[5]
    $cmd = @($f[6..($f.Length - 1)])
    if ($engine -eq "llama.cpp") {
        $np = NPrompt $prompt
        if ($np -eq "") { [Console]::Out.WriteLine("  ${tag}: no MTP-off run of this prompt to take its length from; skipped"); continue }
        $cmd = @($cmd | ForEach-Object { if ($_ -eq "<n_prompt:$prompt>") { $np } else { $_ } })
        [Console]::Out.WriteLine("RUN ${tag}: $($cmd -join ' ')")
        Timed "$RunsDir/$tag.json" "$RunsDir/$tag.err" $cmd
        Record @($tag, $engine, $place, $prompt, $k, $script:RC, $script:Wall, $script:TimedOut, $script:Vram, "$tag.json", "")
    } else {
        [Console]::Out.WriteLine("RUN ${tag}: $($cmd -join ' ')")
        Remove-Item "$RunsDir/$tag.json" -ErrorAction SilentlyContinue
        Timed "$RunsDir/$tag.txt" "$RunsDir/$tag.err" $cmd
        $stats = if (Test-Path "$RunsDir/$tag.json") { "$tag.json" } else { "" }
        Record @($tag, $engine, $place, $prompt, $k, $script:RC, $script:Wall, $script:TimedOut, $script:Vram, $stats, "$tag.txt")
    }
    [Console]::Out.WriteLine("  rc $($script:RC), $($script:Wall) s$(if ($script:TimedOut) { ', TIMED OUT' })")
}

Remove-Item "$RunsDir/vram.tmp" -ErrorAction SilentlyContinue
[Console]::Out.WriteLine("REPORT: $RunsDir $ReportPrefix")
& $Py $Shared $RunsDir $ReportPrefix
exit $LASTEXITCODE
