/// The dashboard's pages: plain HTML with an inline style and script (each carrying the page's
/// CSP nonce), embedded here as strings; nothing is fetched from anywhere but this supernode.
/// The script (DashboardScript.swift) fills the page from the first snapshot, embedded as a JSON
/// block, then from `GET /dashboard/events`.
enum DashboardPage {
    /// The dashboard, with `initialJSON` (a snapshot, `<` escaped) to draw before the first event.
    static func dashboard(nonce: String, initialJSON: String?) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Peerway supernode</title><link rel="icon" href="data:,">
        <style nonce="\(nonce)">\(style)</style></head>
        <body data-updates="0">
        <header>
          <div><h1>Peerway supernode</h1>
            <div class="who"><span id="supernode-address">&ndash;</span></div>
            <div class="who">key <code id="supernode-key">&ndash;</code></div></div>
          <div class="right"><span id="state" class="state">connecting</span><span class="muted">up <span id="uptime">&ndash;</span></span>
            <form method="post" action="/dashboard/logout"><button type="submit">Log out</button></form></div>
        </header>
        <main>
        <section class="tiles">
          <div class="tile"><div class="label">Peers online</div><div class="value" id="peers-online">&ndash;</div>
            <div class="sub"><span id="peers-network">&ndash;</span> in the network &middot; <span id="sessions">&ndash;</span> sessions</div></div>
          <div class="tile"><div class="label">Traversals</div>
            <div class="value"><span id="traversals-direct" class="direct">&ndash;</span> <small>direct</small> <span id="traversals-relayed" class="relayed">&ndash;</span> <small>relayed</small></div>
            <div class="sub"><span id="traversals-failed">&ndash;</span> failed &middot; <span id="direct-share">&ndash;</span> went direct</div></div>
          <div class="tile"><div class="label">Relay throughput</div><div class="value" id="relay-rate">&ndash;</div>
            <div class="sub"><span id="relay-allocations">&ndash;</span> allocations &middot; <span id="relay-total">&ndash;</span> forwarded</div></div>
          <div class="tile"><div class="label">Supernodes</div><div class="value" id="supernode-count">&ndash;</div>
            <div class="sub" id="supernode-links">&ndash;</div></div>
        </section>
        <section class="pair">
          <figure class="card"><figcaption>Peers online over time <span class="legend"><i class="here"></i>here <i class="net"></i>network</span></figcaption>
            <svg id="chart-peers" viewBox="0 0 600 180" role="img" aria-label="peers online over time"></svg></figure>
          <figure class="card"><figcaption>Relay throughput</figcaption>
            <svg id="chart-relay" viewBox="0 0 600 180" role="img" aria-label="relay throughput over time"></svg></figure>
        </section>
        <section class="pair">
          <div class="card"><h2>NAT types seen</h2><p class="note">traversal offers, by the NAT of the peer that offered</p>
            <table class="bars"><tbody id="nat-types"></tbody></table><p id="nat-empty" class="empty">No traversal offers yet.</p></div>
          <div class="card"><h2>Traversals by method</h2><p class="note"><span class="direct">&#9632;</span> direct &nbsp; <span class="relayed">&#9632;</span> relayed</p>
            <table class="bars"><tbody id="methods"></tbody></table></div>
        </section>
        <section class="card"><h2>Supernodes of the network</h2>
          <table class="list"><thead><tr><th>key</th><th>address</th><th>link</th><th class="num">peers</th><th class="num">relay allocations</th><th class="num">heartbeat</th></tr></thead>
          <tbody id="supernodes"></tbody></table></section>
        </main>
        <footer>Updated <span id="updated">&ndash;</span> &middot; live: one snapshot a second over server-sent events</footer>
        <script type="application/json" id="initial">\(initialJSON ?? "null")</script>
        <script nonce="\(nonce)">\(DashboardScript.source)</script>
        </body></html>
        """
    }

    /// The login page: `message` (plain text) and a form that posts the token.
    static func login(message: String, nonce: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Peerway supernode: log in</title><link rel="icon" href="data:,">
        <style nonce="\(nonce)">\(style)</style></head>
        <body class="login">
        <form class="card" method="post" action="/dashboard/login">
          <h1>Peerway supernode</h1>
          <p id="login-message">\(escape(message))</p>
          <label for="token">Admin token</label>
          <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
          <button type="submit">Open the dashboard</button>
          <p class="note">The token is in the supernode's data directory (<code>admin-token</code>).</p>
        </form>
        </body></html>
        """
    }

    /// `text` with `& < > " '` as entities.
    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// The style of both pages.
    static let style = """
    *{box-sizing:border-box}
    body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;background:#f3f5f8;color:#1d2430}
    header{display:flex;justify-content:space-between;align-items:center;gap:16px;padding:14px 24px;background:#1d2430;color:#e8edf4}
    header h1{margin:0 0 2px;font-size:18px;font-weight:600}
    .who{font-size:12px;color:#b8c2d0;word-break:break-all}
    code{font:12px/1.3 ui-monospace,"DejaVu Sans Mono",monospace}
    .right{display:flex;align-items:center;gap:14px;font-size:13px}
    .muted{color:#b8c2d0}
    .state{padding:2px 10px;border-radius:10px;background:#5a6473;color:#fff;font-size:12px}
    .state.live{background:#2e7d32}.state.down{background:#c62828}
    button{font:inherit;padding:5px 12px;border:1px solid #8a94a3;border-radius:6px;background:#fff;color:#1d2430;cursor:pointer}
    header button{background:transparent;color:#e8edf4}
    main{padding:18px 24px;display:grid;gap:16px}
    .tiles{display:grid;grid-template-columns:repeat(4,1fr);gap:16px}
    .tile,.card{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 3px rgba(20,30,50,.12);margin:0}
    .label{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:#5a6473}
    .value{font-size:28px;font-weight:600;margin:2px 0}
    .value small{font-size:14px;font-weight:400;color:#5a6473;margin-right:8px}
    .sub,.note,.empty{font-size:12px;color:#5a6473;margin:0}
    .pair{display:grid;grid-template-columns:1fr 1fr;gap:16px}
    h2,figcaption{font-size:14px;font-weight:600;margin:0 0 6px}
    svg{width:100%;height:auto;display:block}
    .legend{font-weight:400;font-size:12px;color:#5a6473;margin-left:8px}
    .legend i{display:inline-block;width:14px;height:3px;margin:0 4px 3px 8px;vertical-align:middle}
    .legend .here{background:#1565c0}.legend .net{background:#90a4c0}
    .grid line{stroke:#e3e7ed}.axis{fill:#5a6473;font-size:11px}
    .line{fill:none;stroke:#1565c0;stroke-width:2}.line.net{stroke:#90a4c0;stroke-dasharray:5 4}.line.relay{stroke:#6a1b9a}
    .area{fill:#1565c0;opacity:.08}.area.relay{fill:#6a1b9a}
    .dot{fill:#1565c0}.dot.relay{fill:#6a1b9a}
    table{width:100%;border-collapse:collapse}
    td,th{padding:4px 6px;text-align:left;font-size:13px}
    .list th{font-size:12px;color:#5a6473;font-weight:600;border-bottom:1px solid #e3e7ed}
    .list td{border-bottom:1px solid #f0f2f5}
    .num{text-align:right;font-variant-numeric:tabular-nums}
    .bars td:first-child{width:40%}.bars td.num{width:12%}
    .bar{height:12px;background:#eef1f5;border-radius:3px;overflow:hidden}
    .bar span{display:block;height:100%;background:#1565c0}
    .bar span.direct{background:#2e7d32}.bar span.relayed{background:#ef6c00}
    .direct{color:#2e7d32}.relayed{color:#ef6c00}
    .zero{color:#a0a8b4}
    .up{color:#2e7d32}.down-text{color:#c62828;font-weight:600}
    footer{padding:0 24px 18px;font-size:12px;color:#5a6473}
    body.login{display:flex;min-height:100vh;align-items:center;justify-content:center}
    .login form{width:360px;display:grid;gap:10px;padding:24px}
    .login h1{font-size:20px;margin:0}
    .login input{font:inherit;padding:7px 9px;border:1px solid #8a94a3;border-radius:6px}
    .login button{background:#1d2430;color:#fff;border-color:#1d2430}
    #login-message{margin:0;color:#c62828}
    @media (max-width:900px){.tiles{grid-template-columns:1fr 1fr}.pair{grid-template-columns:1fr}}
    """
}
