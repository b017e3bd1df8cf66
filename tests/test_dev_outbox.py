"""`reportflow dev`'s SMTP sink and /dev/outbox: the email is visible with no mail client."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import httpx

from reportflow.core.config import Settings
from reportflow.core.mailer import Mailer
from reportflow.smtp_sink import start_sink
from tests.utils.stack import free_port, serve_api


async def test_sink_keeps_messages_and_outbox_lists_them_newest_first(
    tmp_path: Path, settings: Settings
) -> None:
    outbox, port = tmp_path / "outbox", free_port()
    sink = start_sink("127.0.0.1", port, outbox)
    mailer = Mailer(host="127.0.0.1", port=port, mail_from="reportflow <r@example.com>")
    try:
        for n in (1, 2):
            message = EmailMessage()
            message["From"], message["To"] = mailer.mail_from, f"user{n}@example.com"
            message["Subject"] = f"Report {n} <&>"
            message.set_content("hello")
            message.add_attachment(
                b"%PDF-1.4 n" + bytes([48 + n]),
                maintype="application",
                subtype="pdf",
                filename=f"report-{n}.pdf",
            )
            await mailer.send(message)
    finally:
        sink.stop()

    async with (
        serve_api(settings, dev_outbox=outbox) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        listed = (await http.get("/dev/outbox", headers={"Accept": "application/json"})).json()
        page = await http.get("/dev/outbox")
        pdf = await http.get(f"/dev/outbox/{listed[0]['file']}/attachment")
        # A message outside the outbox that a traversal would serve.
        (tmp_path / "secret.eml").write_bytes((outbox / listed[0]["file"]).read_bytes())
        # Percent-encoded, so the dots reach the handler as the name ".." (a plain
        # "/../" is resolved by the client before it is ever sent).
        parent = await http.get("/dev/outbox/%2e%2e/attachment")
        sibling = await http.get("/dev/outbox/%2e%2e%2fsecret.eml/attachment")

    assert [m["to"] for m in listed] == ["user2@example.com", "user1@example.com"]
    assert listed[0]["attachments"] == ["report-2.pdf"]
    assert page.status_code == 200
    assert "Report 2 &lt;&amp;&gt;" in page.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content == b"%PDF-1.4 n2"
    assert parent.status_code == 404
    assert parent.json()["detail"] == "no such message in the outbox", "refused by the handler"
    assert sibling.status_code == 404


async def test_outbox_is_absent_without_the_dev_sink(http: httpx.AsyncClient) -> None:
    assert (await http.get("/dev/outbox")).status_code == 404
