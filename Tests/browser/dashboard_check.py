#!/usr/bin/env python3
"""Opens every page of a running `vouch ui` in headless Chromium and checks what it shows
against the CLI (`vouch cert list --json`, `vouch fleet list --json`, `vouch audit list --json`),
that planted hostile names are shown as text and never run, and that the browser logged no
error (the Content-Security-Policy reports any inline script or blocked load as SEVERE).
Writes full-page screenshots. Exits non-zero with the failed checks listed.

Driven by Tests/VouchTests/DashboardBrowserTests.swift; usable by hand against any `vouch ui`.
"""
import argparse
import base64
import datetime
import json
import os
import subprocess
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def cli(args, *extra):
    command = [args.vouch, *extra, "--dir", args.dir, "--server", args.server, "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {result.stderr}")
    return json.loads(result.stdout)


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def hour_of(text):
    return parse_time(text).replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # As root Chromium needs --no-sandbox; /dev/shm is small in containers.
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


class Dashboard:
    def __init__(self, driver, base, shots):
        self.driver, self.base, self.shots = driver, base, shots

    def open(self, path):
        self.driver.get(self.base + path)
        title = self.driver.title
        check(title.startswith("Vouch: "), f"{path}: title {title!r}")
        for entry in self.driver.get_log("browser"):
            check(entry["level"] not in ("SEVERE", "ERROR"), f"{path}: browser log {entry['level']}: {entry['message']}")
        check(self.driver.execute_script("return typeof window.pwned") == "undefined", f"{path}: window.pwned is set")
        scripts = self.driver.find_elements(By.TAG_NAME, "script")
        images = self.driver.find_elements(By.CSS_SELECTOR, "main img, main script, main iframe")
        check(not scripts and not images, f"{path}: {len(scripts)} script and {len(images)} img/script/iframe elements")
        return self.driver

    def rows(self, table):
        return self.driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")

    def screenshot(self, name):
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        for directory in self.shots.get(name, []):
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, "dashboard.png" if name == "main" else f"{name}.png"), "wb") as file:
                file.write(base64.b64decode(shot["data"]))


def navigated(driver, act):
    """Runs act (a click or a submit) and waits until the page it leads to has replaced this one:
    selenium may return before the new document is there, and reading the old one then fails."""
    old = driver.find_element(By.TAG_NAME, "html")
    act()
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")


def check_navigation(page, args):
    """Clicking each section and submitting the search keep the key in the path."""
    driver = page.open("/")
    for name, path in [("Expiry", "/expiry"), ("Revocations", "/revocations"), ("Fleet", "/fleet"), ("Audit", "/audit"),
                       ("Inventory", "/")]:
        link = driver.find_element(By.LINK_TEXT, name)
        navigated(driver, link.click)
        check(driver.current_url == page.base + path, f"the {name} link went to {driver.current_url}")
        check(driver.find_element(By.CSS_SELECTOR, "nav a.current").text == name, f"after the {name} link: {driver.title}")
    search = driver.find_element(By.CSS_SELECTOR, "form.search input[name=q]")
    search.send_keys(args.hostile_serial)
    navigated(driver, search.submit)
    check(driver.current_url.startswith(page.base + "/?q=" + args.hostile_serial), f"the search went to {driver.current_url}")
    check(page.rows("inventory")[0].get_attribute("data-serial") == args.hostile_serial, "the search form's result")


def check_inventory(page, args, certificates):
    driver = page.open("/")
    rows = page.rows("inventory")
    shown = {row.get_attribute("data-serial"): row for row in rows}
    check(len(rows) == len(certificates), f"inventory: {len(rows)} rows, cert list has {len(certificates)}")
    check(set(shown) == {c["serial"] for c in certificates}, "inventory: serials differ from cert list")
    for certificate in certificates:
        row = shown.get(certificate["serial"])
        if row is None:
            continue
        check(row.find_element(By.CSS_SELECTOR, "td.spiffe").text == certificate["spiffe_id"],
              f"inventory {certificate['serial']}: SPIFFE ID {row.find_element(By.CSS_SELECTOR, 'td.spiffe').text!r}")
        check(row.find_element(By.CSS_SELECTOR, "td.status").text == certificate["status"], f"inventory {certificate['serial']}: status")
        names = ", ".join(certificate["dns_names"] + certificate["ip_addresses"])
        check(row.find_element(By.CSS_SELECTOR, "td.dns").text == names, f"inventory {certificate['serial']}: names")
    page.screenshot("inventory")

    # The hostile certificate: its names are text in their cells, nothing more.
    driver = page.open("/?q=" + args.hostile_serial)
    row = driver.find_element(By.CSS_SELECTOR, f'#inventory tr[data-serial="{args.hostile_serial}"]')
    spiffe, dns = row.find_element(By.CSS_SELECTOR, "td.spiffe"), row.find_element(By.CSS_SELECTOR, "td.dns")
    check(spiffe.text == args.hostile_spiffe, f"hostile SPIFFE ID shown as {spiffe.text!r}")
    check(dns.text.startswith(args.hostile_dns), f"hostile DNS name shown as {dns.text!r}")
    check(driver.execute_script("return arguments[0].childElementCount + arguments[1].childElementCount", spiffe, dns) == 0,
          "hostile cells have child elements")
    check(page.rows("inventory")[0].get_attribute("data-serial") == args.hostile_serial, "a serial search lists that certificate first")

    revoked = {c["serial"] for c in certificates if c["status"] == "revoked"}
    page.open("/?status=revoked")
    check({row.get_attribute("data-serial") for row in page.rows("inventory")} == revoked, "status=revoked differs from cert list")


def check_expiry(page, args, active):
    expected = {}
    for certificate in active:
        expected[hour_of(certificate["not_after"])] = expected.get(hour_of(certificate["not_after"]), 0) + 1
    driver = page.open(f"/expiry?hours={args.hours}")
    bars = driver.find_elements(By.CSS_SELECTOR, "#expiry-chart rect.bar")
    check(len(bars) == args.hours + 1, f"expiry: {len(bars)} bars for {args.hours} hours")
    drawn = {bar.get_attribute("data-hour"): int(bar.get_attribute("data-count")) for bar in bars}
    check({hour: count for hour, count in drawn.items() if count} == expected, f"expiry chart {drawn} != cert list {expected}")
    heights = {bar.get_attribute("data-hour"): bar.rect["height"] for bar in bars}
    check(all((heights[hour] > 0) == (count > 0) for hour, count in drawn.items()), "expiry: bar heights do not follow the counts")
    tabled = {row.get_attribute("data-hour"): int(row.find_element(By.CSS_SELECTOR, "td.number").text) for row in page.rows("expiry-table")}
    check(tabled == expected, f"expiry table {tabled} != cert list {expected}")
    page.screenshot("expiry")
    page.screenshot("main")


def check_revocations(page, revoked):
    page.open("/revocations")
    rows = page.rows("revocations")
    serials = [row.get_attribute("data-serial") for row in rows]
    check(set(serials) == {c["serial"] for c in revoked} and len(serials) == len(revoked), "revocations differ from cert list")
    by_serial = {c["serial"]: c for c in revoked}
    times = [parse_time(by_serial[serial]["revoked_at"]) for serial in serials if serial in by_serial]
    check(times == sorted(times, reverse=True), "revocations are not newest first")
    for row in rows:
        certificate = by_serial.get(row.get_attribute("data-serial"))
        if certificate:
            check(row.find_elements(By.TAG_NAME, "td")[0].text == certificate["revoked_at"], "revocation time differs from cert list")
    page.screenshot("revocations")


def check_fleet(page, args):
    driver = page.open("/fleet")
    agents = []
    if args.fleet == "unavailable":
        check(bool(driver.find_elements(By.ID, "fleet-unavailable")), "fleet: no 'unavailable' message from a CA without ListAgents")
    else:
        agents = cli(args, "fleet", "list")
        rows = page.rows("fleet")
        shown = [row.get_attribute("data-lineage") for row in rows]
        check(sorted(shown) == sorted(a["lineage"] for a in agents), f"fleet {shown} != fleet list {[a['lineage'] for a in agents]}")
        problems = [bool(a["problems"]) for a in agents]
        check([row.get_attribute("class") == "has-problems" for row in rows] == sorted(problems, reverse=True), "fleet: problems not first")
        by_lineage = {a["lineage"]: a for a in agents}
        for row in rows:
            agent = by_lineage.get(row.get_attribute("data-lineage"))
            if agent:
                check(row.find_element(By.CSS_SELECTOR, "td.spiffe").text == agent["spiffe_id"], "fleet: SPIFFE ID differs")
                check(row.find_element(By.CSS_SELECTOR, "td.host").text == agent["host_name"], "fleet: host name differs")
                check(row.find_element(By.CSS_SELECTOR, "td.error").text == (agent.get("last_error") or ""), "fleet: last error differs")
                check(row.find_elements(By.TAG_NAME, "td")[0].text == (", ".join(agent["problems"]) or "ok"), "fleet: problems differ")
    page.screenshot("fleet")
    return agents


def check_audit(page, args):
    driver = page.open("/audit")
    state = driver.find_element(By.ID, "audit-verification").get_attribute("data-state")
    check(state == args.audit_state, f"audit verification {state!r}, expected {args.audit_state!r}")
    rows = page.rows("audit")
    ids = [int(row.get_attribute("data-id")) for row in rows]
    check(0 < len(ids) <= 50 and ids == sorted(ids, reverse=True), f"audit tail ids {ids}")
    if ids:
        events = {e["id"]: e for e in cli(args, "audit", "list", "--after", str(min(ids) - 1), "--limit", "1000")}
        for row in rows:
            event, cells = events.get(int(row.get_attribute("data-id"))), row.find_elements(By.TAG_NAME, "td")
            if check(event is not None, f"audit row {row.get_attribute('data-id')} not in audit list"):
                check([cells[2].text, cells[3].text, cells[4].text] == [event["actor"], event["action"], event["subject"]],
                      f"audit row {event['id']} differs from audit list")
        check(max(events) >= max(ids), "audit list ends before the page's newest row")
    page.screenshot("audit")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the URL `vouch ui` printed, with its key")
    parser.add_argument("--vouch", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--hours", type=int, default=72)
    parser.add_argument("--hostile-serial", required=True)
    parser.add_argument("--hostile-spiffe", required=True)
    parser.add_argument("--hostile-dns", required=True)
    parser.add_argument("--fleet", choices=["cli", "unavailable"], default="cli",
                        help="compare with `vouch fleet list`, or expect the message of a CA without Admin/ListAgents")
    parser.add_argument("--audit-state", default="intact")
    parser.add_argument("--screenshots", default=".build/screenshots")
    args = parser.parse_args()
    shots = {name: [args.screenshots] for name in ["inventory", "expiry", "revocations", "fleet", "audit", "main"]}
    if os.environ.get("VOUCH_SCREENSHOT_DIR"):
        shots["main"].append(os.environ["VOUCH_SCREENSHOT_DIR"])

    certificates = cli(args, "cert", "list", "--limit", "100000")
    active = cli(args, "cert", "list", "--status", "active", "--expiring-within", f"{args.hours}h", "--limit", "100000")
    revoked = [c for c in certificates if c["status"] == "revoked"]

    agents = []
    driver = browser()
    try:
        # Every page lives below the printed URL, http://127.0.0.1:PORT/<key>/.
        base = args.url.rstrip("/")
        driver.get(args.url)
        check(driver.current_url == args.url, f"the printed URL should be the inventory itself, went to {driver.current_url}")
        page = Dashboard(driver, base, shots)
        check_navigation(page, args)
        check_inventory(page, args, certificates)
        check_expiry(page, args, active)
        check_revocations(page, revoked)
        agents = check_fleet(page, args)
        check_audit(page, args)
        # The stylesheet applied: it is the only source of style the policy allows.
        check(driver.execute_script("return getComputedStyle(document.querySelector('header')).backgroundColor") == "rgb(16, 24, 40)",
              "the stylesheet did not apply")
        # The key travels in the path only: a cookie would be sent to every port of 127.0.0.1.
        check(driver.get_cookies() == [], f"the dashboard set cookies: {driver.get_cookies()}")
    finally:
        driver.quit()
    for failure in failures:
        print("FAIL:", failure)
    print(f"dashboard check: {len(failures)} failures; {len(certificates)} certificates, {len(revoked)} revoked, "
          f"{len(active)} expiring within {args.hours} h, {len(agents)} agents")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
