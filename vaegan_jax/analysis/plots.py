"""Small charts drawn with Pillow, for the figures' and experiments' PNGs (no plotting library)."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Line colours, in order: red, blue, green, orange, purple, brown, grey, teal.
PALETTE = ((200, 60, 60), (40, 90, 180), (50, 150, 70), (230, 140, 20), (130, 70, 170),
           (140, 90, 50), (110, 110, 110), (20, 150, 150))


def bar_chart(title: str, values: dict[str, float], width: int = 420) -> np.ndarray:
  """A small horizontal bar chart [H, W, 3] uint8: one labelled bar per entry, its value
  printed at its end, bars scaled to the largest value."""
  font = ImageFont.load_default()
  probe = ImageDraw.Draw(Image.new('RGB', (1, 1)))
  margin = 8 + int(max([probe.textlength(label, font=font) for label in values] + [0]))
  row, top = 18, 20
  canvas = Image.new('RGB', (width, top + row * len(values) + 6), 'white')
  draw = ImageDraw.Draw(canvas)
  draw.text((4, 4), title, fill='black', font=font)
  largest = max([abs(value) for value in values.values()] + [1e-12])
  span = width - margin - 60
  for index, (label, value) in enumerate(values.items()):
    y = top + index * row
    length = int(span * abs(value) / largest)
    draw.text((4, y + 2), label, fill='black', font=font)
    draw.rectangle((margin, y + 2, margin + length, y + row - 4), fill=(70, 110, 170))
    draw.text((margin + length + 4, y + 2), f'{value:.4g}', fill='black', font=font)
  return np.asarray(canvas)


def line_chart(curves: dict[str, tuple[list[float], list[float]]], title: str,
               log_x: bool = False, width: int = 640) -> np.ndarray:
  """A line chart [H, W, 3] uint8 of each labelled curve (xs, ys), coloured from PALETTE in
  order, with a legend; log_x puts x on a log scale (x > 0)."""
  height, left, top, bottom, legend = 360, 60, 30, 40, 200
  canvas = Image.new('RGB', (width, height), 'white')
  draw = ImageDraw.Draw(canvas)
  font = ImageFont.load_default()
  scale = math.log10 if log_x else float
  all_x = [scale(x) for xs, _ in curves.values() for x in xs]
  all_y = [y for _, ys in curves.values() for y in ys]
  x_low, x_high, y_low, y_high = min(all_x), max(all_x), min(all_y), max(all_y)
  right = width - legend
  to_x = lambda x: left + (scale(x) - x_low) / max(x_high - x_low, 1e-9) * (right - left)
  to_y = lambda y: top + (y_high - y) / max(y_high - y_low, 1e-9) * (height - top - bottom)
  draw.text((left, 8), title, fill='black', font=font)
  draw.line([(left, top), (left, height - bottom), (right, height - bottom)], fill='black')
  for y in (y_low, (y_low + y_high) / 2, y_high):
    draw.text((4, to_y(y) - 6), f'{y:.3g}', fill='black', font=font)
  ticks = sorted({x for xs, _ in curves.values() for x in xs}) if log_x else [
      x_low, (x_low + x_high) / 2, x_high]
  for x in ticks:
    draw.text((to_x(x) - 10, height - bottom + 6), f'{x:.6g}', fill='black', font=font)
  for index, (label, (xs, ys)) in enumerate(curves.items()):
    colour = PALETTE[index % len(PALETTE)]
    points = [(to_x(x), to_y(y)) for x, y in zip(xs, ys)]
    draw.line(points, fill=colour, width=2)
    for px, py in points:
      draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
    draw.text((right + 10, top + 14 * index), label, fill=colour, font=font)
  return np.asarray(canvas)
