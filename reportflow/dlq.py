"""`reportflow dlq`: the dead-letter queue from a terminal (straight to Temporal)."""

from __future__ import annotations

import sys

from reportflow.audit import audit, operator
from reportflow.config import Settings
from reportflow.ops import NotRedrivable, failed_reports, redrive
from reportflow.temporal import connect


async def list_failed(settings: Settings) -> int:
    client = await connect(settings)
    token: bytes | None = None
    rows = []
    while True:
        page, token = await failed_reports(client, page_size=100, page_token=token)
        rows.extend(page)
        if not token:
            break
    if not rows:
        sys.stdout.write("no failed reports\n")
        return 0
    sys.stdout.write(
        f"{'REPORT':<48} {'REASON':<18} {'STAGE':<10} {'TRIES':>5}  FAILED AT / MESSAGE\n"
    )
    for r in rows:
        when = r.failed_at.strftime("%Y-%m-%d %H:%M:%S") if r.failed_at else "-"
        sys.stdout.write(
            f"{r.report_id:<48} {r.reason:<18} {r.stage or '-':<10} {r.attempts:>5}  {when}\n"
            f"{'':<48} {r.message}\n"
        )
    return 0


async def redrive_reports(settings: Settings, report_ids: list[str], every: bool) -> int:
    client = await connect(settings)
    if every:
        report_ids, token = [], None
        while True:
            page, token = await failed_reports(client, page_size=100, page_token=token)
            report_ids.extend(r.report_id for r in page)
            if not token:
                break
    code = 0
    for report_id in report_ids:
        try:
            run_id = await redrive(client, settings, report_id)
        except NotRedrivable as err:
            sys.stderr.write(f"{report_id}: not redriven: {err}\n")
            code = 1
            continue
        audit(operator(), "redrive", report_id, run_id=run_id)
        sys.stdout.write(f"{report_id}: redriven (run {run_id})\n")
    if not report_ids:
        sys.stdout.write("no failed reports to redrive\n")
    return code
