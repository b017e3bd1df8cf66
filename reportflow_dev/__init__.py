"""reportflow's development rig, kept out of the runtime package (the wheel and the
image carry `reportflow` only): the test stack (`testing.py`: servers, processes and
settings for tests), `reportflow chaos` (`chaos.py`) and `reportflow bench`
(`bench.py`, `bench_status.py`, `capacity.py`), whose commands `cli.py` adds to the
`reportflow` command when this package is there."""
