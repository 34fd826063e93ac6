"""Gimel's benchmarks: `python -m bench` measures every figure side by side in one run."""
