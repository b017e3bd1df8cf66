"""reportflow: durable background report generation on Temporal (see README, Layout)."""
