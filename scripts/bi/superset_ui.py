"""Drive a running Superset through its own pages, as docs/bi-tools.md tells a user to, with
Selenium and Debian's chromium-driver: log in, connect the warehouse with the documented URI,
add a dataset, build a chart of it, read the numbers the chart shows and compare them with
psql. A screenshot of every step goes to SHOTS. Used by scripts/check-superset.sh.

    superset_ui.py SUPERSET_URL WAREHOUSE_URI PGDW_BINARY SHOTS
"""
import json
import os
import subprocess
import sys
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE, URI, PGDW, SHOTS = sys.argv[1:5]
DATABASE = "warehouse (through the UI)"
SCHEMA, TABLE = "public", "instances_by_state"
os.makedirs(SHOTS, exist_ok=True)

opts = Options()
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
    opts.add_argument(a)
opts.binary_location = "/usr/bin/chromium"
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
shot_n = 0


def shot(name):
    global shot_n
    shot_n += 1
    path = os.path.join(SHOTS, f"{shot_n:02d}-{name}.png")
    d.save_screenshot(path)
    print(f"  screenshot {path}")


def until(condition, what, timeout=60):
    try:
        return WebDriverWait(d, timeout).until(condition)
    except TimeoutException:
        shot("failed-" + what.replace(" ", "-"))
        raise SystemExit(f"Superset's UI: gave up waiting for {what}")


def clickable(css, what=None, timeout=60):
    return until(EC.element_to_be_clickable((By.CSS_SELECTOR, css)), what or css, timeout)


def type_into(css, text, what=None):
    """Type `text` into the field, again until it holds it: a page still rendering may replace
    the field it was typed into."""
    def typed(d):
        field = d.find_element(By.CSS_SELECTOR, css)
        if not field.is_displayed() or not field.is_enabled():
            return False
        if field.get_attribute("value") != text:
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(Keys.DELETE)
            field.send_keys(text)
        return field.get_attribute("value") == text
    until(typed, what or f"typing into {css}")


def option(text, exact=True):
    """Click the open dropdown's option whose text is `text` (or holds it)."""
    match = f"normalize-space(.)={json.dumps(text)}" if exact else f"contains(normalize-space(.), {json.dumps(text)})"
    xpath = f"//div[contains(@class, 'ant-select-item-option') and {match}]"
    until(EC.element_to_be_clickable((By.XPATH, xpath)), f"the option {text}").click()


def choose(select_css, text, exact=True):
    """Open an Ant Design select, type to filter, and pick `text`."""
    box = clickable(select_css + " input", f"the select {select_css}")
    box.click()
    box.send_keys(text)
    option(text, exact)


def pick_in_popover(n, text):
    """In the open popover's `n`th select, pick `text`."""
    def box(d):
        inputs = [i for i in d.find_elements(By.CSS_SELECTOR, ".ant-popover input[type=search], .ant-popover .ant-select input")
                  if i.is_displayed()]
        return inputs[n] if len(inputs) > n else False
    field = until(box, f"select {n} of the popover")
    field.click()
    field.send_keys(text)
    option(text)


def psql(sql):
    out = subprocess.run([PGDW, "psql", "-XAtq", "-F", "\t", "-c", sql], check=True,
                         capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


try:
    print("  log in")
    d.get(BASE + "/login/")
    type_into('[data-test="username-input"]', "admin")
    type_into('[data-test="password-input"]', "admin")
    shot("login")
    d.find_element(By.CSS_SELECTOR, '[data-test="login-button"]').click()
    until(lambda d: "/login" not in d.current_url, "the login to finish")

    print(f"  connect the warehouse: + Database, PostgreSQL, a SQLAlchemy URI (docs/bi-tools.md, step 3)")
    d.get(BASE + "/databaseview/list/")
    clickable('[data-test="btn-create-database"]').click()
    clickable('[data-test="database-modal"]')
    choose('[data-test="database-modal"]', "PostgreSQL")
    clickable('[data-test="sqla-connect-btn"]').click()
    type_into('[data-test="database-name-input"]', DATABASE)
    type_into('[data-test="sqlalchemy-uri-input"]', URI)
    shot("connect-database")
    # Connect is enabled once the connection was tested.
    until(EC.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Test connection']")),
          "Test connection").click()
    until(EC.presence_of_element_located((By.XPATH, "//*[contains(., 'Connection looks good')]")),
          "the connection test to pass")
    clickable('[data-test="btn-submit-connection"]', "Connect").click()
    until(EC.presence_of_element_located(
        (By.XPATH, f"//*[@data-test='listview-table']//*[normalize-space(.)={json.dumps(DATABASE)}]")),
        "the new database in the list")
    shot("database-list")

    print(f"  add the dataset {SCHEMA}.{TABLE}")
    d.get(BASE + "/dataset/add/")
    clickable('[data-test="select-database"]', "the database picker")
    choose('[data-test="select-database"]', DATABASE, exact=False)
    choose('[data-test="Select schema"]', SCHEMA, exact=False)
    choose('[data-test="Select table or type to search tables"]', TABLE, exact=False)
    until(EC.presence_of_element_located((By.XPATH, "//*[normalize-space(.)='Table columns']")),
          "the table's columns")
    shot("dataset-preview")
    until(EC.element_to_be_clickable(
        (By.XPATH, "//button[normalize-space(.)='Create and explore dataset']")),
        "Create and explore dataset").click()
    until(lambda d: "/dataset/add" not in d.current_url, "the dataset to be created")

    print("  build a chart: Table, grouped by state, SUM(instances)")
    # The dataset the UI just made, asked of Superset's API in the browser's own session.
    found = d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/v1/dataset/?q=' + encodeURIComponent(arguments[0]), {credentials: 'same-origin'})
          .then(r => r.json()).then(j => done(j.result.map(x => x.id)), e => done(String(e)));
    """, f"(filters:!((col:table_name,opr:eq,value:{TABLE})))")
    if not isinstance(found, list) or len(found) != 1:
        raise SystemExit(f"the dataset {TABLE} the UI created is not there: {found}")
    dataset_id = found[0]
    d.get(BASE + f"/explore/?datasource_type=table&datasource_id={dataset_id}&viz_type=table")
    # Dimensions: state.
    until(EC.element_to_be_clickable((By.XPATH, "//*[normalize-space(text())='Drop columns here or click']")),
          "Dimensions").click()
    pick_in_popover(0, "state")
    clickable('[data-test="ColumnEdit#save"]', "the dimension's Save").click()
    # Metrics: SUM(instances), on the Simple tab.
    until(EC.element_to_be_clickable((By.XPATH, "(//*[normalize-space(text())='Drop columns/metrics here or click'])[1]")),
          "Metrics").click()
    clickable("#adhoc-metric-edit-tabs-tab-SIMPLE", "the metric's Simple tab").click()
    pick_in_popover(0, "instances")
    pick_in_popover(1, "SUM")
    clickable('[data-test="AdhocMetricEdit#save"]', "the metric's Save").click()
    shot("chart-controls")
    until(EC.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Create chart']")),
          "Create chart").click()
    # The rendered table, read at once (it re-renders while it settles), once it says how many rows.
    until(EC.presence_of_element_located((By.XPATH, "//*[contains(normalize-space(.), 'rows') and contains(@class, 'ant-tag') or @data-test='row-count-label']")),
          "the chart's row count", timeout=90)

    def read(d):
        rows = d.execute_script("""
            return [...document.querySelectorAll('.chart-container table tbody tr, [data-test="chart-container"] table tbody tr')]
                   .map(tr => [...tr.cells].map(td => td.innerText.trim()));""")
        return rows if rows and all(len(r) >= 2 for r in rows) else False
    rows = until(read, "the chart's rows")
    shot("chart")
    shown = sorted((r[0], r[1].replace(",", "")) for r in rows)
    want = sorted((s, n) for s, n in psql(
        "SELECT state, sum(instances)::bigint FROM instances_by_state GROUP BY state"))
    print(f"  the chart shows {len(shown)} rows, psql {len(want)}: "
          f"{'identical' if shown == want else 'DIFFERENT'}")
    for s, n in shown:
        print(f"    {s} | {n}")
    if shown != want:
        raise SystemExit(f"the chart's numbers differ from psql's: {shown} vs {want}")

    print("  save the chart")
    clickable('[data-test="query-save-button"]', "Save").click()
    type_into('[data-test="new-chart-name"]', "Instances by state (UI)", "the chart's name")
    clickable('[data-test="btn-modal-save"]', "the save button").click()
    d.get(BASE + "/chart/list/")
    until(EC.presence_of_element_located(
        (By.XPATH, "//*[normalize-space(.)='Instances by state (UI)']")), "the saved chart in the list")
    shot("chart-list")

    # Leave Superset as it was (the REST check after this one makes the documented datasets,
    # which Superset keeps unique by table): the chart, the dataset, the connection.
    left = d.execute_async_script("""
        const [chart, dataset, database] = arguments, done = arguments[arguments.length - 1];
        const get = p => fetch(p, {credentials: 'same-origin'}).then(r => r.json());
        const del = p => fetch(p, {method: 'DELETE', credentials: 'same-origin'}).then(r => r.status);
        (async () => {
            const charts = (await get('/api/v1/chart/?q=(page_size:100)')).result.filter(c => c.slice_name === chart);
            const dbs = (await get('/api/v1/database/?q=(page_size:100)')).result.filter(x => x.database_name === database);
            const statuses = [];
            for (const c of charts) statuses.push(await del('/api/v1/chart/' + c.id));
            statuses.push(await del('/api/v1/dataset/' + dataset));
            for (const x of dbs) statuses.push(await del('/api/v1/database/' + x.id));
            return statuses;
        })().then(done, e => done(String(e)));
    """, "Instances by state (UI)", dataset_id, DATABASE)
    if not isinstance(left, list) or any(st != 200 for st in left) or len(left) != 3:
        raise SystemExit(f"removing what the UI check made: {left}")
    print("  the UI check passed (its chart, dataset and connection removed again)")
finally:
    d.quit()
