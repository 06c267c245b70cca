"""asv benchmarks for fastdnn (``asv.conf.json``: ``benchmark_dir``); see docs/benchmarks.md."""
