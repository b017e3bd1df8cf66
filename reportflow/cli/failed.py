"""`reportflow dlq`: the dead-letter service's answers written for a terminal.

Straight to Temporal, like the admin API. Bulk actions by filter (`--user`,
`--since`, `--query`, `--reason`) count and list first and act only with `--yes`.
"""

from __future__ import annotations

import sys

from reportflow.core.audit import operator
from reportflow.core.config import Settings
from reportflow.core.temporal import connect
from reportflow.service import bulk
from reportflow.service.dead_letters import Filter, every_failed
from reportflow.service.reports import NotRedrivable, redrive

SHOWN = 20


def _show(ids: list[str], what: str) -> None:
    sys.stdout.write(f"{len(ids)} {what}\n")
    for report_id in ids[:SHOWN]:
        sys.stdout.write(f"  {report_id}\n")
    if len(ids) > SHOWN:
        sys.stdout.write(f"  ... and {len(ids) - SHOWN} more\n")


async def list_failed(settings: Settings, kind: str | None = None) -> int:
    client = await connect(settings)
    rows = await every_failed(client, Filter(kind=kind))
    if not rows:
        sys.stdout.write("no failed reports\n")
        return 0
    sys.stdout.write(
        f"{'REPORT':<48} {'KIND':<18} {'REASON':<18} {'STAGE':<10} {'TRIES':>5}  "
        "FAILED AT / MESSAGE\n"
    )
    for r in rows:
        when = r.failed_at.strftime("%Y-%m-%d %H:%M:%S") if r.failed_at else "-"
        sys.stdout.write(
            f"{r.report_id:<48} {r.kind:<18} {r.reason:<18} {r.stage or '-':<10} "
            f"{r.attempts:>5}  {when}\n"
            f"{'':<48} {r.message}\n"
        )
    return 0


async def redrive_reports(settings: Settings, report_ids: list[str]) -> int:
    """Redrive the named reports, each audited as the operator's action."""
    client = await connect(settings)
    code = 0
    for report_id in report_ids:
        try:
            run_id = await redrive(client, settings, report_id, actor=operator())
        except NotRedrivable as err:
            sys.stderr.write(f"{report_id}: not redriven: {err}\n")
            code = 1
            continue
        sys.stdout.write(f"{report_id}: redriven (run {run_id})\n")
    if not report_ids:
        sys.stdout.write("no failed reports to redrive\n")
    return code


async def redrive_matching(settings: Settings, where: Filter, *, yes: bool) -> int:
    client = await connect()
    ids = await bulk.matching_failed(client, where)
    _show(ids, "failed reports match")
    if not ids or not yes:
        if ids:
            sys.stdout.write("nothing redriven: add --yes to redrive them\n")
        return 0
    result = await bulk.redrive_all(client, settings, ids, where=where, actor=operator())
    for report_id, why in result.refused.items():
        sys.stderr.write(f"{report_id}: not redriven: {why}\n")
    sys.stdout.write(f"redriven: {result.redriven}\n")
    return 1 if result.refused else 0


async def cancel_matching(settings: Settings, where: Filter, *, yes: bool) -> int:
    """Cancel the matching running reports as one batch operation; `where.reason`
    is the note the batch records (running reports have no failure reason)."""
    client = await connect()
    note = where.reason or "reportflow reports cancel"
    where = Filter(user=where.user, since=where.since, query=where.query)
    runs = await bulk.matching_running(client, where)
    _show([r.workflow_id for r in runs], "running reports match")
    if not runs or not yes:
        if runs:
            sys.stdout.write("nothing cancelled: add --yes to cancel them\n")
        return 0
    batch = await bulk.cancel_all(client, runs, where=where, note=note, actor=operator())
    sys.stdout.write(
        f"cancel requested: {batch.completed} of {batch.total} "
        f"(failed: {batch.failed}; batch job {batch.job_id}). A report already "
        "sending its email completes.\n"
    )
    return 1 if batch.failed else 0
