"""The processes as Temporal workflows; each module imports nothing heavy (the sandbox)."""
