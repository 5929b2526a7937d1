"""module_utils.schedule_freeze: the pure parts, commenting cron lines out and back in."""

from __future__ import annotations

import re

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.schedule_freeze import (
    compile_marker, freeze_text, is_job, prefix, thaw_text)

CRONTAB = (
    "# m h dom mon dow user command\r\n"
    "SHELL=/bin/sh\n"
    "TREAZRISLAND_HOME=/opt/treazrisland\n"
    "*/5 * * * * app /opt/treazrisland/bin/sync\n"
    "# 0 2 * * * app /opt/treazrisland/bin/report\n"
    "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n"
    "\n"
    "@reboot app /opt/treazrisland/bin/warm"
)


def test_only_job_lines_are_jobs():
    assert is_job("*/5 * * * * app cmd --x=1")
    assert is_job("@reboot app cmd")
    assert not is_job("SHELL=/bin/sh")
    assert not is_job(' "QUOTED NAME" = x')
    assert not is_job("  # 0 2 * * * app cmd")
    assert not is_job("   ")


def test_freeze_comments_out_matching_jobs_only_and_keeps_every_other_byte():
    text, frozen = freeze_text(CRONTAB, re.compile("treazrisland"), "r1")
    assert frozen == ["*/5 * * * * app /opt/treazrisland/bin/sync", "@reboot app /opt/treazrisland/bin/warm"]
    assert text == CRONTAB.replace("*/5 *", prefix("r1") + "*/5 *").replace("@reboot", prefix("r1") + "@reboot")
    assert prefix("r1") == "#treazrisland-frozen r1# "
    again, more = freeze_text(text, re.compile("treazrisland"), "r2")
    assert (again, more) == (text, [])  # frozen lines are comments: never frozen twice


def test_thaw_restores_the_recorded_lines_only():
    text, frozen = freeze_text(CRONTAB, re.compile("sync"), "r1")
    entries = [{"line": line, "frozen": prefix("r1") + line} for line in frozen]
    restored, lines, left = thaw_text(text, entries)
    assert restored == CRONTAB and lines == frozen and left == []
    # The operator's own comment is not in the record; a line frozen under another id neither.
    other = CRONTAB.replace("@reboot", prefix("r0") + "@reboot")
    restored, lines, left = thaw_text(other, entries)
    assert lines == [] and left == entries and restored == other


def test_thaw_restores_each_recorded_duplicate_once():
    text = "* * * * * a tz\n* * * * * a tz\n"
    frozen_text, frozen = freeze_text(text, re.compile("tz"), "r")
    entry = {"line": "* * * * * a tz", "frozen": prefix("r") + "* * * * * a tz"}
    restored, lines, left = thaw_text(frozen_text, [entry])
    assert restored == "* * * * * a tz\n" + prefix("r") + "* * * * * a tz\n"
    assert len(lines) == 1 and left == []
    assert thaw_text(frozen_text, [entry, dict(entry)])[0] == text and len(frozen) == 2


def test_a_bad_marker_is_named():
    with pytest.raises(OpsError, match="marker '\\(' is not a valid regular expression"):
        compile_marker("(")
    with pytest.raises(OpsError, match="marker is required"):
        compile_marker("")
