"""An example report kind: how many times the user paid each merchant in the last N days.

Name it in REPORT_KINDS (`merchant_count:merchant_count`, this folder on PYTHONPATH)
and restart the API and the worker; it is then on the page, the CLI and every route.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field
from sqlalchemy import text

from reportflow.kinds import QueryContext, ReportKind


class Days(BaseModel):
    days: int = Field(30, ge=1, le=366, description="How many days back, ending now")


COUNTS = text(
    "select merchant, count(*) as payments, cast(-sum(amount_cents) as bigint) as spent_cents "
    "from transactions where user_id = :u and posted_at >= :since and amount_cents < 0 "
    "group by merchant order by payments desc, merchant limit 50"
)


async def count_merchants(ctx: QueryContext, params: Days) -> dict:
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=params.days)
    rows = await ctx.connection.execute(COUNTS, {"u": ctx.user_id, "since": since})
    return {"rows": [dict(r._mapping) for r in rows]}


merchant_count = ReportKind(
    name="merchant-count",
    title="Merchant count",
    params=Days,
    query=count_merchants,
    template=Path(__file__).with_name("merchant_count.html.j2"),
    description="How many times you paid each merchant in the last N days",
)
