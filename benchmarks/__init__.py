"""layerdiff's benchmarks: reproducible data (``benchmarks.data``) and the side-by-side
runner (``benchmarks.run``), run from the repository root as ``python -m benchmarks.run``."""
