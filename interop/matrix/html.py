"""matrix.html: the matrix as one static page that needs no JavaScript.

One grid per transport (rows: client → server, columns: cases), each cell
coloured by its result and linking to its log; filters by peer and by case
made of radio buttons and CSS (`:checked ~ main ...` hides what does not
match); a summary line per peer; the triage of every failing cell; and what
started or stopped passing since the previous committed run.
"""

import re
from html import escape

from .cases import CASES
from .clients import CLIENTS, SERVERS, TRANSPORTS, transport_not_applicable

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.2em;margin:1.6em 0 .4em}
input.f{position:absolute;opacity:0;pointer-events:none}
nav.filters{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #ccc;z-index:2}
nav.filters div{margin:.2em 0}
nav label{display:inline-block;padding:.05em .5em;margin:.1em;border:1px solid #bbb;border-radius:3px;cursor:pointer}
table{border-collapse:collapse}
table.grid td,table.grid th{border:1px solid #ccc;padding:.15em .35em;text-align:center;white-space:nowrap}
table.grid th.pair{text-align:left}
table.grid thead th{position:sticky;top:4.2em;background:#f4f4f4;z-index:1}
td.pass{background:#c8f0c8}td.fail{background:#f6a5a5}td.fail.peer{background:#fbd38d}td.na{background:#eee;color:#888}
td a{color:inherit;text-decoration:none;display:block}
td small{display:block;font-size:.75em;color:#333}
table.peers td,table.peers th{border:1px solid #ccc;padding:.2em .5em;text-align:left}
.legend span{display:inline-block;padding:0 .5em;margin-right:.5em}
ul.triage li{margin:.25em 0}
"""


def ident(name):
    """A name made safe for an HTML id and a CSS class."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def filter_css(peers, cases):
    rules = []
    for p in peers:
        i = ident(p)
        rules.append(f"#p-{i}:checked~main tr.row:not(.p-{i}),#p-{i}:checked~main li.cellref:not(.p-{i})"
                     "{display:none}")
        rules.append(f"#p-{i}:checked~nav label[for=p-{i}]{{background:#333;color:#fff}}")
    for c in cases:
        i = ident(c)
        rules.append(f"#k-{i}:checked~main .k:not(.k-{i}){{display:none}}")
        rules.append(f"#k-{i}:checked~nav label[for=k-{i}]{{background:#333;color:#fff}}")
    rules.append("#p-all:checked~nav label[for=p-all],#k-all:checked~nav label[for=k-all]{background:#333;color:#fff}")
    return "\n".join(rules)


def cell_html(cell):
    if cell is None:
        return "<td></td>"
    case = ident(cell["case"])
    result = cell["result"]
    classes = ["k", f"k-{case}", "na" if result == "n/a" else result]
    triage = cell.get("triage") or {}
    if result == "fail" and triage.get("verdict") == "peer limitation":
        classes.append("peer")
    title = cell["detail"] + (f" — {triage['verdict']}: {triage['explanation']}" if triage else "")
    mark = {"pass": "✓", "fail": "✗", "n/a": "n/a"}[result]
    extra = f"<small>{escape(cell['detail'])}</small>" if cell["case"] == "kex" and result == "pass" else ""
    inner = f"{mark}{extra}"
    if cell.get("log"):
        inner = f'<a href="{escape(cell["log"])}">{inner}</a>'
    return f'<td class="{" ".join(classes)}" title="{escape(title)}">{inner}</td>'


def grid(transport, by_key):
    cases = [case for case in CASES if any(k[2] == transport and k[3] == case for k in by_key)]
    pairs = [(cl, sv) for cl in CLIENTS for sv in SERVERS
             if any((cl, sv, transport, case) in by_key for case in cases)
             and not transport_not_applicable(cl, sv, transport)]
    if not pairs:
        return ""
    out = [f'<h2 id="t-{transport}">{transport}</h2>', '<table class="grid"><thead><tr><th class="pair">client → server</th>']
    out += [f'<th class="k k-{ident(c)}">{escape(c)}</th>' for c in cases]
    out.append("</tr></thead><tbody>")
    for client, server in pairs:
        out.append(f'<tr class="row p-{ident(client)} p-{ident(server)}"><th class="pair">{escape(client)} → '
                   f'{escape(server)}</th>')
        out += [cell_html(by_key.get((client, server, transport, case))) for case in cases]
        out.append("</tr>")
    out.append("</tbody></table>")
    absent = {}
    for client in CLIENTS:
        for server in SERVERS:
            why = transport_not_applicable(client, server, transport)
            if why and any(k[:3] == (client, server, transport) for k in by_key):
                absent.setdefault(why, []).append(f"{client} → {server}")
    for why, names in absent.items():
        out.append(f"<p>Not in this grid (every cell n/a): {escape(', '.join(names))}: {escape(why)}</p>")
    return "\n".join(out)


def page(meta, records, peers, changes):
    from .report import change_lines, counts, key, peer_summary
    by_key = {key(c): c for c in records}
    names = list(peers)
    cases = [c for c in CASES if any(r["case"] == c for r in records)]
    n = counts(records)
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>sshq interop matrix</title>", f"<style>{STYLE}\n{filter_css(names, cases)}</style></head><body>"]
    # The filters' state: radio buttons before <nav> and <main>, so that CSS `~` reaches both.
    out.append('<input class="f" type="radio" name="peer" id="p-all" checked>')
    out += [f'<input class="f" type="radio" name="peer" id="p-{ident(p)}">' for p in names]
    out.append('<input class="f" type="radio" name="case" id="k-all" checked>')
    out += [f'<input class="f" type="radio" name="case" id="k-{ident(c)}">' for c in cases]
    out.append(f"<h1>sshq interop matrix ({'quick' if meta['quick'] else 'full'})</h1>")
    out.append(f"<p>Run {escape(meta['date'])} on commit <code>{escape(str(meta['commit']))}</code>: "
               f"{len(records)} cells, <b>{n['pass']} passed</b>, <b>{n['fail']} failed</b>, {n['n/a']} not "
               f"applicable; {meta['seconds']:.0f} s with {meta['workers']} workers. Data: "
               '<a href="matrix.json">matrix.json</a> (schema: interop/matrix/SCHEMA.md); text: '
               '<a href="matrix.md">matrix.md</a>. Transports: ' +
               ", ".join(f'<a href="#t-{t}">{t}</a>' for t in TRANSPORTS) + ".</p>")
    out.append('<nav class="filters"><div>Peer: <label for="p-all">all</label>' +
               "".join(f'<label for="p-{ident(p)}">{escape(p)}</label>' for p in names) + "</div>")
    out.append('<div>Case: <label for="k-all">all</label>' +
               "".join(f'<label for="k-{ident(c)}">{escape(c)}</label>' for c in cases) + "</div></nav>")
    out.append("<main>")
    out.append('<p class="legend"><span style="background:#c8f0c8">✓ passed</span>'
               '<span style="background:#f6a5a5">✗ failed</span>'
               '<span style="background:#fbd38d">✗ failed: the peer\'s own limitation (same failure against '
               'OpenSSH)</span><span style="background:#eee">n/a: cannot apply (hover for the reason)</span> '
               "Click a cell for its log; hover for its detail.</p>")
    out.append('<h2 id="peers">Peers</h2><table class="peers"><tr><th>peer</th><th>roles</th><th>version</th>'
               "<th>summary</th></tr>")
    for name, info in peers.items():
        out.append(f'<tr class="row p-{ident(name)}"><td>{escape(name)}</td><td>{escape(", ".join(info["roles"]))}'
                   f"</td><td><code>{escape(info['version'])}</code></td>"
                   f"<td>{escape(peer_summary(name, records))}</td></tr>")
    out.append("</table>")
    out.append('<h2 id="changes">Since the previous committed run</h2><ul>')
    out += [f"<li>{escape(line.removeprefix('- '))}</li>" for line in change_lines(changes)]
    out.append("</ul>")
    for transport in TRANSPORTS:
        out.append(grid(transport, by_key))
    failures = [c for c in records if c["result"] == "fail"]
    out.append(f'<h2 id="failures">Failing cells ({len(failures)}) and their triage</h2><ul class="triage">')
    for c in failures:
        triage = c.get("triage") or {}
        link = f' <a href="{escape(c["log"])}">log</a>' if c.get("log") else ""
        out.append(f'<li class="cellref p-{ident(c["client"])} p-{ident(c["server"])}"><span class="k k-{ident(c["case"])}">'
                   f'<b>{escape(c["client"])} → {escape(c["server"])}</b> over {c["transport"]}, {escape(c["case"])}: '
                   f"{escape(c['detail'])}{link}"
                   + (f"<br><i>{escape(triage['verdict'])}</i>: {escape(triage['explanation'])}" if triage else "")
                   + "</span></li>")
    out.append("</ul>")
    reasons = {}
    for c in records:
        if c["result"] == "n/a" and not transport_not_applicable(c["client"], c["server"], c["transport"]):
            reasons.setdefault(c["detail"], set()).add((c["client"], c["server"], c["case"]))
    out.append('<h2 id="na">Why cells cannot apply</h2><ul>')
    for why, where in sorted(reasons.items()):
        out.append(f"<li>{escape(why)} ({len(where)} cells)</li>")
    out.append("</ul>")
    out.append("<p>Rerun: <code>interop/run matrix</code> (all cells) or <code>interop/run matrix --quick</code> "
               "(the CI subset).</p></main></body></html>")
    return "\n".join(out) + "\n"
