"""Parts of ``bench/bench_serving.py``: datasets, request backends, statistics, launching."""
