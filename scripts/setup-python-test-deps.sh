#!/usr/bin/env bash
# Installs the Python packages the Rust tests drive (idempotent): the official `openai`
# client, which tests/serve_openai.rs points at `hybrid-run serve` through tests/openai_client.py.
set -euo pipefail
py=${PYTHON:-python3}
if "$py" -c "import openai" 2>/dev/null; then
  echo "python test deps present (openai $("$py" -c 'import openai; print(openai.__version__)'))"
else
  "$py" -m pip install -q "openai>=1.30,<3"
  echo "installed openai $("$py" -c 'import openai; print(openai.__version__)')"
fi
# matplotlib: bench-scripts/bench_27b_report.py draws its plot with it (tests/bench_scripts.rs
# checks the PNG; without it that half is reported skipped).
if "$py" -c "import matplotlib" 2>/dev/null; then
  echo "python test deps present (matplotlib $("$py" -c 'import matplotlib; print(matplotlib.__version__)'))"
else
  "$py" -m pip install -q "matplotlib>=3.5"
  echo "installed matplotlib $("$py" -c 'import matplotlib; print(matplotlib.__version__)')"
fi
# tree-sitter-powershell: tests/bench_scripts.rs parses bench-scripts/bench-27b-mtp.ps1 with it
# (a syntax check only; there is no PowerShell to run it here).
if "$py" -c "import tree_sitter, tree_sitter_powershell" 2>/dev/null; then
  echo "python test deps present (tree-sitter-powershell)"
else
  "$py" -m pip install -q "tree-sitter>=0.23" "tree-sitter-powershell>=0.24"
  echo "installed tree-sitter-powershell"
fi
