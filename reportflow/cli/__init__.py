"""`reportflow`: one command for every part of the service.

One module per group of commands, each a Typer app that `app.py` puts together:

- `serve.py`: `dev`, `api`, `worker` (run the service)
- `database.py`: `db upgrade|current`, `seed`
- `tokens.py`: `token create|list|revoke`, `keygen`
- `reports.py`: `request` (through the API) and `render` (here, for template work)
- `dlq.py`: `dlq list|redrive`, `reports cancel` (old name `dlq cancel`)
- `schedule.py`: `schedule create|list|...`
- `request/`: the `request` command on the public client (`follow.py` events and polling,
  `progress.py` the progress line, `interrupt.py` Ctrl-C)
- `options.py`: what several commands share

`chaos` and `bench` live in the development package (`reportflow_dev/cli.py`) and are
there only when it is installed (a checkout, not the wheel or the image).
"""

from reportflow.cli.app import app, main, run

__all__ = ["app", "main", "run"]
