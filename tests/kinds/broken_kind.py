"""A team's kind whose query raises: it must end in the dead-letter view, named by kind."""

from pydantic import BaseModel

from reportflow.kinds import QueryContext, ReportKind


class NoParams(BaseModel):
    pass


async def always_fails(ctx: QueryContext, params: NoParams) -> dict[str, object]:
    raise RuntimeError("the reporting view merchant_stats does not exist")


def as_text(data: object, params: NoParams) -> bytes:
    return b"never reached"


broken = ReportKind(
    name="broken-view", title="Broken view", params=NoParams, query=always_fails,
    render=as_text, format="txt",
)  # fmt: skip


async def writes(ctx: QueryContext, params: NoParams) -> dict[str, object]:
    """Tries to write through the read-only connection a kind is given."""
    from sqlalchemy import text

    await ctx.connection.execute(text("delete from transactions"))
    return {}


writer = ReportKind(
    name="writer", title="Writer", params=NoParams, query=writes, render=as_text, format="txt"
)


async def big_result(ctx: QueryContext, params: NoParams) -> dict[str, object]:
    """About 300 KB of data: more than a Temporal payload should carry."""
    return {"rows": [f"{i:06d}" + "x" * 994 for i in range(300)]}


def count_rows(data: dict[str, list[str]], params: NoParams) -> bytes:
    return f"{len(data['rows'])} rows, last {data['rows'][-1][:6]}".encode()


big = ReportKind(
    name="big-result", title="Big result", params=NoParams, query=big_result,
    render=count_rows, format="txt",
)  # fmt: skip
