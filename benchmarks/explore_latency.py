r"""How long vaegan-explore takes to answer a slider: on the server, and as the browser sees it.

  .venv/bin/python benchmarks/explore_latency.py --run=runs/synthetic
  .venv/bin/python benchmarks/explore_latency.py --run=runs/synthetic --browser   # + Chromium

The server's time is the edit handler alone (encode once, then decode z + sum a_i v_i per
move), called as the page calls it, after one call that compiles. With --browser, the page is
served here and Debian's headless Chromium (tests/browser's settings) moves one slider to a new
value each time: the round trip from the key press to the new image's address on the page.
Any run works: the time depends on the networks' sizes, not their weights. It prints the median
and the 90th percentile of --moves, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def percentiles(times_ms: list[float]) -> dict[str, float]:
  ordered = sorted(times_ms)
  return {'median_ms': statistics.median(ordered),
          'p90_ms': ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]}


def server_side(page, moves: int) -> dict[str, float]:
  _, _, z, y = page.test_face(0)
  names = page.attribute_names
  page.edit(z, y, *[0.0] * len(names))                      # compiles
  times = []
  for move in range(moves):
    strengths = [0.0] * len(names)
    strengths[move % len(names)] = 0.25 * (move % 12 - 6)
    start = time.perf_counter()
    page.edit(z, y, *strengths)
    times.append(1000 * (time.perf_counter() - start))
  return percentiles(times)


def browser_side(page, moves: int) -> dict[str, float]:
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  from selenium.webdriver.support.ui import WebDriverWait

  from vaegan_jax.analysis import explore_page
  port = 7899
  explore_page.launch(explore_page.build(page), '127.0.0.1', port, 10**7, block=False)
  options = webdriver.ChromeOptions()
  options.binary_location = '/usr/bin/chromium'
  for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic',
               '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=options)
  try:
    wait = WebDriverWait(driver, 60, poll_frequency=0.005)
    driver.get(f'http://127.0.0.1:{port}')
    wait.until(lambda d: d.find_elements(By.ID, 'pick'))
    driver.find_element(By.ID, 'pick').click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#edited img'))
    box = driver.find_element(By.CSS_SELECTOR,
                              f'#slider-{page.attribute_names[0]} input[type=number]')
    image = lambda: driver.find_element(By.CSS_SELECTOR, '#edited img').get_attribute('src')
    times = []
    for move in range(moves + 1):
      before = image()
      box.clear()
      box.send_keys(str(0.25 * (move % 12 + 1)))
      start = time.perf_counter()
      box.send_keys(Keys.ENTER)
      wait.until(lambda d: image() != before)
      if move:                                  # the first also compiles nothing new, but warms
        times.append(1000 * (time.perf_counter() - start))
    return percentiles(times)
  finally:
    driver.quit()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--run', required=True, help='The workdir of a trained run.')
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--moves', type=int, default=50)
  parser.add_argument('--browser', action='store_true')
  args = parser.parse_args()
  os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
  from vaegan_jax.analysis import explore_page
  page = explore_page.Page(args.run, args.data_dir, num_encode=2000)
  run = page.explorer.run
  result = {'run': args.run, 'resolution': run.config.model.resolution,
            'attributes': len(page.attribute_names), 'moves': args.moves,
            'server': server_side(page, args.moves)}
  print(f"server, edit handler: median {result['server']['median_ms']:.1f} ms, "
        f"p90 {result['server']['p90_ms']:.1f} ms over {args.moves} moves")
  if args.browser:
    result['browser'] = browser_side(page, args.moves)
    print(f"browser, key press to new image: median {result['browser']['median_ms']:.0f} ms, "
          f"p90 {result['browser']['p90_ms']:.0f} ms")
  print(json.dumps(result))


if __name__ == '__main__':
  main()
