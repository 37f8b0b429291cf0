"""vaegan-explore in a real browser (issue 49): Debian's headless Chromium, driven by Selenium,
on the page served for a tiny run. Run by .ci/run after it installs the browser; locally:

  .venv/bin/python -m pytest -m browser tests/browser

Without Chromium and ChromeDriver it fails, saying so: a skip would read as a pass in CI.
"""
import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tiny_runs import initialised_runs, subprocess_env

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
# As the machine's notes advise: no background connections, which a closed network refuses.
CHROMIUM_FLAGS = ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic',
                  '--no-first-run', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
                  '--window-size=1400,1200')


def free_port():
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


@pytest.fixture(scope='module')
def served(tmp_path_factory):
  """vaegan-explore on a tiny run, in its own process, as a user starts it: its address."""
  root = tmp_path_factory.mktemp('explore')
  workdir = initialised_runs(root, ('vaegan',))['vaegan']
  port = free_port()
  log = open(root / 'server.log', 'w')
  server = subprocess.Popen(
      [sys.executable, '-m', 'vaegan_jax.analysis.explore_page', f'--run={workdir}',
       f'--port={port}', '--num_encode=200'],
      env=subprocess_env(1, GRADIO_TEMP_DIR=str(root / 'gradio')), stdout=log,
      stderr=subprocess.STDOUT)
  deadline = time.time() + 180
  while time.time() < deadline and server.poll() is None:
    try:
      urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=2)
      break
    except OSError:
      time.sleep(0.5)
  if server.poll() is not None or time.time() >= deadline:
    server.kill()
    pytest.fail(f'vaegan-explore did not serve: {(root / "server.log").read_text()[-2000:]}')
  yield f'http://127.0.0.1:{port}'
  server.terminate()
  server.wait(timeout=30)
  log.close()


@pytest.fixture
def browser():
  for path in (CHROMIUM, CHROMEDRIVER):
    if not shutil.which(path):
      pytest.fail(f'{path} is missing: install Debian\'s chromium and chromium-driver '
                  f'(apt-get install chromium chromium-driver), as .ci/run does.')
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in CHROMIUM_FLAGS:
    options.add_argument(flag)
  options.set_capability('goog:loggingPrefs', {'performance': 'ALL'})
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  yield driver
  driver.quit()


def shown_pixels(driver, selector):
  """The pixels of the image an element shows, fetched from its own address."""
  from selenium.webdriver.common.by import By
  source = driver.find_element(By.CSS_SELECTOR, selector).get_attribute('src')
  with urllib.request.urlopen(source, timeout=10) as response:
    return np.asarray(Image.open(io.BytesIO(response.read())).convert('RGB'))


def test_a_slider_changes_the_face_and_every_request_stays_on_this_machine(served, browser,
                                                                          tmp_path):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  from selenium.webdriver.support.ui import WebDriverWait
  wait = WebDriverWait(browser, 60)
  browser.get(served)
  wait.until(lambda driver: driver.find_elements(By.ID, 'pick'))

  index = browser.find_element(By.CSS_SELECTOR, '#index input')
  index.clear()
  index.send_keys('3', Keys.TAB)
  browser.find_element(By.ID, 'pick').click()
  wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, '#edited img'))
  before = browser.find_element(By.CSS_SELECTOR, '#edited img').get_attribute('src')
  unedited = shown_pixels(browser, '#edited img')
  np.testing.assert_array_equal(unedited, shown_pixels(browser, '#reconstruction img'))

  strength = browser.find_element(By.CSS_SELECTOR, '#slider-Smiling input[type=number]')
  strength.clear()
  strength.send_keys('3', Keys.ENTER)
  wait.until(lambda driver: driver.find_element(By.CSS_SELECTOR, '#edited img')
             .get_attribute('src') != before)
  smiling = shown_pixels(browser, '#edited img')
  assert smiling.shape == unedited.shape and not np.array_equal(smiling, unedited)
  message = browser.find_element(By.ID, 'message').text
  assert message.startswith('edit:'), message

  screenshot = tmp_path / 'explorer.png'
  browser.save_screenshot(str(screenshot))
  page = np.asarray(Image.open(screenshot).convert('L'), np.float32)
  assert page.std() > 10                                  # not blank
  for control in ('pick', 'slider-Smiling', 'edited', 'status'):
    assert browser.find_element(By.ID, control).is_displayed(), control
  print(f'screenshot: {screenshot}')

  addresses = set()
  for entry in browser.get_log('performance'):
    event = json.loads(entry['message'])['message']
    if event['method'] == 'Network.requestWillBeSent':
      addresses.add(event['params']['request']['url'])
  assert addresses
  elsewhere = sorted(address for address in addresses
                     if not address.startswith((served + '/', 'data:', 'blob:')))
  assert not elsewhere, elsewhere
