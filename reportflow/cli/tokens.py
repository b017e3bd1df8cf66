"""`reportflow token create|list|revoke` and `reportflow keygen`: credentials."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from reportflow.core.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from reportflow.core.tokens import TokenInfo

app = typer.Typer()
token = typer.Typer(no_args_is_help=True)
app.add_typer(token, name="token", help="manage API tokens")


def _on_database(action: Callable[[AsyncEngine], Awaitable[None]]) -> None:
    """Run `action` on DATABASE_URL; a TokenError is the user's mistake (exit 2)."""
    from reportflow.core.db import create_engine, ensure_schema
    from reportflow.core.tokens import TokenError

    settings = get_settings()

    async def go() -> None:
        engine = create_engine(settings.database_url)
        await ensure_schema(engine, migrate=settings.is_dev)
        try:
            await action(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(go())
    except TokenError as err:
        sys.stderr.write(f"reportflow token: {err}\n")
        raise typer.Exit(2) from None


@token.command("create", help="mint a token and print it once (its ID goes to stderr)")
def create(
    user: Annotated[str | None, typer.Option(help="the user the token belongs to")] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="an admin token (all users' reports)")
    ] = False,
    label: Annotated[str, typer.Option(help="a note to remember the token by")] = "",
    days: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="valid for N days (default USER_TOKEN_DAYS=90, ADMIN_TOKEN_DAYS=7)"
        ),
    ] = None,
) -> None:
    from reportflow.core.tokens import create_token, hash_token, token_id

    if (user is None) == (not admin):
        raise typer.BadParameter("give one of them, not both", param_hint="--user / --admin")
    settings = get_settings()
    lifetime = days or (settings.admin_token_days if admin else settings.user_token_days)

    async def mint(engine: AsyncEngine) -> None:
        minted = await create_token(
            engine, user_id=user, admin=admin, label=label, lifetime=timedelta(days=lifetime)
        )
        # The token alone on stdout (scripts capture it); its ID for list/revoke on stderr.
        sys.stdout.write(minted + "\n")
        sys.stderr.write(
            f"token ID {token_id(hash_token(minted))}, expires in {lifetime} days; "
            "it is shown only this once\n"
        )

    _on_database(mint)


@token.command(
    "list", help="every token: ID, user or admin, state, created, expires, last used, label"
)
def list_() -> None:
    from reportflow.core.tokens import list_tokens

    async def show(engine: AsyncEngine) -> None:
        _table(await list_tokens(engine))

    _on_database(show)


@token.command("revoke", help="revoke a token at once, on every API replica")
def revoke(
    id_or_token: Annotated[
        str, typer.Argument(metavar="ID|TOKEN", help="a token ID (tok_…) or the token")
    ],
) -> None:
    from reportflow.core.audit import audit, operator
    from reportflow.core.tokens import revoke_token

    async def go(engine: AsyncEngine) -> None:
        revoked = await revoke_token(engine, id_or_token)
        audit(operator(), "token revoke", revoked)
        sys.stdout.write(f"revoked {revoked}\n")

    _on_database(go)


def _table(rows: Sequence[TokenInfo]) -> None:
    def when(moment: datetime | None) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"

    now = datetime.now(UTC)
    sys.stdout.write(
        f"{'ID':<17} {'FOR':<22} {'STATE':<8} {'CREATED':<16}  {'EXPIRES':<16}  "
        f"{'LAST USED':<16}  LABEL\n"
    )
    for row in rows:
        who = "admin" if row.is_admin else f"user {row.user_id}"
        sys.stdout.write(
            f"{row.id:<17} {who:<22} {row.state(now):<8} {when(row.created_at):<16}  "
            f"{when(row.expires_at):<16}  {when(row.last_used_at):<16}  {row.label}\n"
        )


@app.command(
    "keygen",
    short_help="print a random SECRET_KEY and a PAYLOAD_ENCRYPTION_KEYS entry",
    help="To rotate the payload key, put the new entry first in PAYLOAD_ENCRYPTION_KEYS "
    "and keep the old ones after it: they still decrypt.",
)
def keygen(
    key_id: Annotated[str | None, typer.Option(help="the new key's ID (default k<today>)")] = None,
) -> None:
    import secrets

    from reportflow.core.codec import new_key_entry

    sys.stdout.write(
        f"SECRET_KEY={secrets.token_urlsafe(32)}\n"
        f"PAYLOAD_ENCRYPTION_KEYS={new_key_entry(key_id or f'k{date.today():%Y%m%d}')}\n"
    )
