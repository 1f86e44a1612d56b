"""Bars and the ticking clock draw in place on a terminal and stay silent when disabled."""

from __future__ import annotations

import io
import time

from lcup.progress import bar, on_tty, ticking


def test_bar_draws_in_place_and_ends_the_line():
    s = io.StringIO()
    for i in range(1, 5):
        bar(i, 4, "dates", width=8, stream=s)
    out = s.getvalue()
    assert out.count("\r") == 4 and out.endswith("[########] 4/4\n")
    assert "\r  dates [####----] 2/4" in out


def test_ticking_shows_elapsed_time_only_when_enabled():
    s = io.StringIO()
    with ticking("training", every_s=0.05, stream=s):
        time.sleep(0.3)
    out = s.getvalue()
    assert out.count("\r  training: ") >= 3 and out.endswith(" s\n")
    s = io.StringIO()
    with ticking("training", enabled=False, stream=s):
        time.sleep(0.1)
    assert s.getvalue() == "" and not on_tty(io.StringIO())
