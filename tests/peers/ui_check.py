"""The status page in a real browser: headless Chromium, driven by Selenium.

usage: ui_check.py BASE_URL READ_TOKEN SCREENSHOT_DIR ASSET DRIFTED_ITEM

Logs in through the form like a person, reads every page, checks what a person would see
there, and saves a screenshot of each page into SCREENSHOT_DIR (CI keeps them as artefacts).
Exits 0 when everything held; otherwise prints what did not and exits 1.
"""

import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def main() -> int:
    base, token, shots, asset, item = sys.argv[1:6]
    os.makedirs(shots, exist_ok=True)
    options = Options()
    options.binary_location = os.environ.get("OTDRIFT_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(arg)
    service = Service(os.environ.get("OTDRIFT_CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    failures = []

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    def shot(name):
        driver.save_screenshot(os.path.join(shots, name))

    def text():
        return driver.find_element(By.TAG_NAME, "body").text

    try:
        # Not logged in: any page leads to the login form.
        driver.get(base + "/ui")
        check(driver.current_url.endswith("/ui/login"), "a page without a session shows the login form")
        field = driver.find_element(By.ID, "token")
        check(field.get_attribute("type") == "password", "the token is typed into a password field")
        shot("01-login.png")

        field.send_keys("not-the-token")
        field.submit()
        check("not the read token" in text(), "a wrong token is refused, and the page says so")
        shot("02-login-refused.png")

        field = driver.find_element(By.ID, "token")
        field.send_keys(token)
        field.submit()
        check(driver.current_url.endswith("/ui"), "the right token leads to the assets")
        body = text()
        check(asset in body, "the asset is listed")
        check("approved" in body or "provisional" in body, "its baseline is shown")
        check("open drift" in body, "the summary counts open drift")
        cookie = driver.get_cookie("otdrift_ui")
        check(cookie is not None and cookie.get("httpOnly") is True, "the session cookie is HttpOnly")
        check(cookie is not None and cookie.get("sameSite") == "Strict", "the session cookie is SameSite=Strict")
        check(len(driver.find_elements(By.TAG_NAME, "script")) == 0, "the page holds no script")
        shot("03-assets.png")

        driver.find_element(By.LINK_TEXT, "Drift").click()
        check("Drift" in driver.title, "the drift list opens from the navigation")
        links = driver.find_elements(By.PARTIAL_LINK_TEXT, "#")
        check(len(links) > 0, "drift events are listed")
        shot("04-drift-list.png")
        if links:
            links[0].click()
            body = text()
            check(item in body, f"the drift's item diff names {item}")
            check("Items that differ from the baseline" in body, "the item diff is there")
            shot("05-drift-diff.png")

        driver.find_element(By.LINK_TEXT, "Approvals").click()
        check("approval(s) wait" in text(), "pending approvals are shown")
        shot("06-approvals.png")

        driver.find_element(By.LINK_TEXT, "Audit chain").click()
        check("The hash chain holds" in text(), "the audit chain is shown as holding")
        shot("07-audit.png")

        # Read-only: the only forms are logout (and login, before).
        actions = {f.get_attribute("action") for f in driver.find_elements(By.TAG_NAME, "form")}
        check(all(a.endswith("/ui/logout") for a in actions), f"no form but logout ({actions})")

        driver.find_element(By.XPATH, "//button[text()='Log out']").click()
        check(driver.current_url.endswith("/ui/login"), "logging out returns to the login form")
        driver.get(base + "/ui")
        check(driver.current_url.endswith("/ui/login"), "after logging out the pages need a login again")
    finally:
        driver.quit()
    if failures:
        print("failed: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
