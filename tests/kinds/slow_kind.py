"""A team's kind whose query takes longer than the workflow's local attempt allows."""

import asyncio

from pydantic import BaseModel

from reportflow.kinds import QueryContext, ReportKind


class Seconds(BaseModel):
    seconds: float = 4.0


async def slow_count(ctx: QueryContext, params: Seconds) -> dict[str, object]:
    await asyncio.sleep(params.seconds)
    return {"waited": params.seconds}


def as_text(data: dict[str, object], params: Seconds) -> bytes:
    return f"waited {data['waited']} s".encode()


slow = ReportKind(
    name="slow-query", title="Slow query", params=Seconds, query=slow_count,
    render=as_text, format="txt",
)  # fmt: skip
