import numpy as np

from vaegan_jax.analysis import plots


def test_bar_chart_scales_bars_to_the_largest_value():
  chart = plots.bar_chart('FID', {'a': 1.0, 'b': 4.0})
  assert chart.shape[2] == 3 and chart.dtype == np.uint8
  bar_rows = [chart[20 + 18 * index + 8] for index in range(2)]
  lengths = [int(np.sum(np.all(row == (70, 110, 170), axis=-1))) for row in bar_rows]
  assert lengths[1] > 3.5 * lengths[0] > 0


def horizontal_span(chart, colour, right):
  columns = np.flatnonzero(np.any(np.all(chart[:, :right] == colour, axis=-1), axis=0))
  return columns.max() - columns.min()


def test_line_chart_places_points_on_a_linear_or_log_axis():
  curves = {'short': ([1, 10], [1.0, 2.0]), 'long': ([1, 100], [1.0, 2.0])}
  right = 640 - 200                                  # the legend lies right of the axes
  for log_x, expected in ((True, 0.5), (False, 9 / 99)):
    chart = plots.line_chart(curves, 'x', log_x=log_x)
    assert chart.shape == (360, 640, 3)
    short, long = (horizontal_span(chart, colour, right) for colour in plots.PALETTE[:2])
    assert abs(short / long - expected) < 0.03, (log_x, short, long)
