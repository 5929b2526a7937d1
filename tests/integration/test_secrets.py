"""No password and no full DSN in any output, even at -vvv, on success and on failure."""

from __future__ import annotations

import urllib.parse

from helpers import run_tasks


def test_password_and_dsn_never_appear_at_vvv(pg_a, sample_db, backup_dir):
    wrong = "wrong-" + pg_a.password[::-1]
    tasks = [
        {"name": "backup by DSN", "treazrisland.ops.db_backup": {"dsn": pg_a.dsn(sample_db), "dest": backup_dir}},
        {"name": "backup by options", "treazrisland.ops.db_backup":
            dict(pg_a.params(sample_db), dest=backup_dir, format="directory", jobs=2)},
        {"name": "failed login", "ignore_errors": True, "treazrisland.ops.db_backup":
            dict(pg_a.params(sample_db), password=wrong, dest=backup_dir)},
        {"name": "failed restore", "ignore_errors": True, "treazrisland.ops.db_restore":
            {"dsn": pg_a.dsn("secret_target"), "src": backup_dir + "/missing.dump"}},
        {"name": "check-mode restore", "treazrisland.ops.db_restore":
            {"dsn": pg_a.dsn("secret_target"), "src": "{{ _backup_by_dsn.path }}"}, "check_mode": True},
    ]
    tasks[0]["register"] = "_backup_by_dsn"
    run = run_tasks(tasks, verbosity=3)

    assert [r["status"] for r in run.results] == ["ok", "ok", "failed", "failed", "ok"]
    assert "password authentication failed" in run.results[2]["result"]["msg"]
    assert len(run.output) > 5000  # -vvv really printed the invocations and results
    for secret in (pg_a.password, urllib.parse.quote(pg_a.password, safe=""), wrong, pg_a.dsn(sample_db),
                   pg_a.dsn("secret_target")):
        assert secret not in run.output
        for result in run.results:
            assert secret not in str(result)
