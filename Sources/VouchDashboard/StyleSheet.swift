/// The dashboard's only stylesheet, served at /style.css, and its icon at /icon.svg: the
/// Content-Security-Policy allows styles and images from the dashboard itself only (no inline
/// `style`), and nothing else is loaded.
enum StyleSheet {
    /// Without an icon link the browser asks for /favicon.ico, and logs the 404 as an error.
    static let icon = """
    <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#101828"/>\
    <path d="M9 16.5l5 5 9-11" fill="none" stroke="#4f9cff" stroke-width="3.5" stroke-linecap="round" stroke-linejoin="round"/></svg>
    """

    static let css = """
    :root { --ink: #1d2430; --muted: #5b6576; --line: #d9dee7; --accent: #1f6feb; --bad: #b42318; --warn: #b54708; --ok: #067647; }
    * { box-sizing: border-box; }
    body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink); background: #f6f8fb; }
    header { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #101828; }
    header .brand { color: #fff; font-weight: 700; font-size: 16px; letter-spacing: .02em; }
    nav a { color: #cbd5e1; text-decoration: none; margin-right: 16px; padding: 4px 0; }
    nav a.current { color: #fff; border-bottom: 2px solid var(--accent); }
    main { padding: 8px 24px 24px; max-width: 1400px; }
    h1 { font-size: 20px; margin: 16px 0 12px; }
    h2 { font-size: 16px; margin: 20px 0 8px; }
    footer { padding: 8px 24px 24px; color: var(--muted); font-size: 12px; }
    table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
    th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
    th { background: #eef2f7; font-weight: 600; font-size: 12px; text-transform: uppercase; color: var(--muted); }
    td.serial, td.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; white-space: nowrap; }
    td.spiffe, td.dns, td.detail, td.error, td.host { overflow-wrap: anywhere; }
    td.spiffe { min-width: 14em; }
    td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
    #expiry-table { width: auto; min-width: 360px; }
    .status-active, .state-ok { color: var(--ok); }
    .status-revoked, .problem, .state-broken { color: var(--bad); font-weight: 600; }
    .status-expired, .state-unavailable { color: var(--warn); }
    tr.has-problems td { background: #fff6f5; }
    form.search { display: flex; gap: 8px; margin: 0 0 12px; }
    form.search input.short { flex: 0 0 7em; }
    form.search label { align-self: center; }
    form.search input[type=search] { flex: 1; max-width: 480px; padding: 6px 8px; border: 1px solid var(--line); border-radius: 4px; }
    form.search select, form.search button { padding: 6px 10px; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
    form.search button { background: var(--accent); color: #fff; border-color: var(--accent); }
    p.summary, p.empty { color: var(--muted); }
    p.notice { padding: 12px 14px; background: #fffaeb; border: 1px solid #fedf89; border-radius: 4px; }
    .verification { padding: 12px 14px; background: #fff; border: 1px solid var(--line); border-radius: 4px; }
    svg.chart { width: 100%; height: auto; background: #fff; border: 1px solid var(--line); }
    svg.chart rect.bar { fill: var(--accent); }
    svg.chart rect.bar:hover { fill: #0b4fb3; }
    svg.chart line.axis { stroke: #98a2b3; }
    svg.chart text { fill: var(--muted); font-size: 11px; }
    a.next { display: inline-block; margin-top: 10px; }
    p.windows a, p.windows strong { margin-right: 12px; }
    a { color: var(--accent); }
    """
}
