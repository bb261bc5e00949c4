"""Benchmarks and the evidence pipeline behind docs/benchmarks: the run ledger (`benchmarks.ledger`), targets declared
before a run (`benchmarks/targets/`, `benchmarks.decision`), the report that regenerates every figure of
docs/benchmarks from raw files (`benchmarks.report`), and the GPU session plan (`benchmarks.plan`)."""
