# Sourced by the GPU scripts: cuBLAS (the GPU prefill GEMM path) is loaded at run time, and
# some hosts (the benchmark machine among them) keep it only inside a Python venv's NVIDIA
# wheels. Adds those folders to LD_LIBRARY_PATH; without cuBLAS the GEMM path turns off with a
# warning.
for _d in /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib /opt/torch/.venv/lib/python3*/site-packages/nvidia/cublas/lib; do
  [ -d "$_d" ] && export LD_LIBRARY_PATH="$_d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
unset _d
