"""reportflow: durable background report generation on Temporal (see docs/layout.md)."""
