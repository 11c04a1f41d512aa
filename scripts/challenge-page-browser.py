#!/usr/bin/env python3
"""Completes a TOTP challenge on camfa's hosted challenge page in headless Chromium
(Debian's chromium and chromedriver, driven by selenium), as a user would: the page is
opened from its link, a wrong code is refused on the page, the right one verifies.

usage: challenge-page-browser.py URL SECRET SCREENSHOT_DIR
Prints one JSON object: the page's headers, what the page showed, and the mfaToken."""
import json, sys, time, urllib.request

import pyotp
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

url, secret, shots = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
with urllib.request.urlopen(url) as r:
    out["status"] = r.status
    out["csp"] = r.headers.get("Content-Security-Policy")
    out["frameOptions"] = r.headers.get("X-Frame-Options")
    out["cacheControl"] = r.headers.get("Cache-Control")

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=800,900"]:
    options.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    wait = WebDriverWait(driver, 20)
    driver.get(url)
    out["title"] = driver.title
    otp = driver.find_element(By.ID, "method-otp")
    otp.click()
    driver.find_element(By.ID, "code").send_keys("000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    driver.save_screenshot(shots + "/challenge-page-form.png")
    driver.find_element(By.ID, "verify").click()
    out["problem"] = wait.until(EC.presence_of_element_located((By.ID, "problem"))).text
    # The confirmation used the current step; the next one is accepted (one step of drift).
    driver.find_element(By.ID, "method-otp").click()
    driver.find_element(By.ID, "code").send_keys(pyotp.TOTP(secret).at(int(time.time()) + 30))
    driver.find_element(By.ID, "verify").click()
    out["verified"] = wait.until(EC.presence_of_element_located((By.ID, "verified"))).text
    out["mfaToken"] = driver.find_element(By.ID, "mfaToken").get_attribute("textContent")
    driver.save_screenshot(shots + "/challenge-page-verified.png")
finally:
    driver.quit()
print(json.dumps(out))
