"""The report service: what the API routes, the CLI commands and the schedules do, written once."""
