"""Benchmarks that print figures beside the raw ceilings measured in the same run."""
