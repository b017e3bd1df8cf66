"""The report's HTML: its template, its figures' formatting, its charts' geometry (all pure)."""

from reportflow.report.html import format_cents, render_html

__all__ = ["format_cents", "render_html"]
