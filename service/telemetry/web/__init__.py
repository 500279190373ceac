"""The telemetry API's page for people: the live dashboard, and the files it is made of.

``dashboard.html`` is served at ``/dashboard``, and at ``/`` to a client that prefers HTML (a
browser); ``static/`` at ``/static``: the page's script and style sheet, and uPlot
(``static/vendor/uplot``, vendored from its npm release by ``scripts/vendor-uplot``). Every file
the page needs ships in the wheel and comes from the API itself: a trading host has no internet
egress, and the page's Content-Security-Policy lets it load nothing from anywhere else.

The page reads only the API's own JSON: ``/`` once for what the service is, then every second
``/history?after=T`` (the points the sampler took since the last one the page drew, and the
``/latest`` document of the newest reading: stages, readiness, kill switch, rejects,
positions), and ``/host`` every ten seconds. ``/history`` is made and serialised on the
sampler's thread once per reading, so an open page adds no reading of the engine's stats block
and little work per poll (``dashboard_interference`` in ``trading-service bench``).
"""

from __future__ import annotations

from pathlib import Path

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"

# 'self' only: the page loads, connects to and draws nothing from any other origin
DASHBOARD_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


# What one open page asks, and how often (seconds): dashboard.js's loops, which a test holds to
# this list; the bench's ten simulated pages (service.bench.e2e) poll exactly this.
PAGE_POLLS = (("history", 1.0), ("host", 10.0))


def dashboard_html() -> str:
    return (WEB_DIR / "dashboard.html").read_text()


def wants_html(accept: str) -> bool:
    """Whether an Accept header prefers the page to JSON.

    A browser lists ``text/html`` first (``text/html,...,*/*;q=0.8``); curl sends ``*/*`` and
    scripts ``application/json``: those keep getting JSON, as does a tie.
    """
    html_q, json_q = 0.0, 0.0
    json_rank = 0  # 3: application/json, 2: application/*, 1: */*; the most specific one counts
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == "text/html":
            html_q = max(html_q, q)
        rank = {"application/json": 3, "application/*": 2, "*/*": 1}.get(media, 0)
        if rank > json_rank:
            json_rank, json_q = rank, q
        elif rank and rank == json_rank:
            json_q = max(json_q, q)
    return html_q > 0 and html_q > json_q
