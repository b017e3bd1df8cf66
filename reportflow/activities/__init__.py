"""The work the workflows call: one class per concern, its clients handed in by the worker."""
