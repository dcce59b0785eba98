"""The page shell every HTML view shares: language, one stylesheet inside the page (nothing
loaded from elsewhere), a skip link, a main landmark; colours meet WCAG 2.1 AA contrast and
zones are always written out in words beside their colour."""

from __future__ import annotations

import html

from interop.text import text

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#1a1a1a;background:#fff;max-width:80em}
h1{font-size:1.4em;margin:0 0 .3em} h2{font-size:1.15em;margin:1.2em 0 .4em} .meta{color:#444}
table{border-collapse:collapse;width:100%} caption{text-align:left;font-weight:600;padding:.4em 0}
th,td{text-align:left;vertical-align:top;padding:.4em .5em;border-bottom:1px solid #bbb}
thead th{background:#f0f0f0}
.zone{display:inline-block;padding:0 .35em;border:1px solid #333;border-radius:3px;font-weight:600}
.zone-red{background:#b00020;color:#fff} .zone-yellow{background:#ffd54f;color:#1a1a1a}
.zone-green{background:#e3f1e5;color:#1b5e20} .zone-not-assessed{background:#fff;color:#1a1a1a;border-style:dashed}
.reason-red,.ev-red{color:#b00020;font-weight:700} .reason-yellow,.ev-yellow{color:#6d4c00}
ul.plain{list-style:none;margin:0;padding:0}
figure{margin:.6em 0} figcaption{font-weight:600} svg.chart{max-width:100%;height:auto}
form{margin:.2em 0} button{font:inherit;padding:.15em .6em}
label{display:block;font-size:.9em} textarea{width:14em;height:2.4em}
textarea.wide{display:block;width:100%;max-width:40em;height:6em;margin-bottom:.3em}
a{color:#0b4f9c} .skip{position:absolute;left:-999px} .skip:focus{left:1em;top:1em;background:#fff}
@media print{form{display:none} body{margin:0} .skip{display:none}}
"""


def page(title: str, body: str) -> str:
    """A complete page in the product's style."""
    return (
        f'<!doctype html><html lang="nb"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<a class="skip" href="#main">{html.escape(text("page.skip"))}</a>'
        f'<main id="main">{body}</main></body></html>'
    )
