"""Server-rendered pages (Jinja2, every template autoescaped).

Jinja2Templates' default only escapes *.html and friends; our templates end in
.j2, so the environment is built here with autoescape on for all of them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)
)
