"""docs/benchmarks, regenerated from its raw files and the run ledger: `python -m benchmarks.report` rewrites the
numbers inside every `<!-- report:NAME -->` ... `<!-- /report -->` block of docs/benchmarks/README.md and
platform-gpu/README.md; `--check` only compares (CI: tests/benchmarks/test_report.py). Blocks are defined per
section: `early` (§1-§9), `sessions` (§10-§13), `platform` (platform-gpu/), `evidence` (ledger, targets, plan)."""
