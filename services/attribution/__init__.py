"""The attribution service: which messages earned which conversions, and how the loop performs."""
