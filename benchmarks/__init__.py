"""Benchmarks: lisguard against its peers (make bench). See benchmarks/README.md."""
