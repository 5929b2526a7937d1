"""The demo: start two throwaway clusters, back one up and restore into the other, compare, stop.

Run by `make demo`. Leaves the backup and its manifest in demo-output/backups
and no server running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sandbox.pgcluster import PgCluster  # noqa: E402
from sandbox.sample_db import populate, table_fingerprints  # noqa: E402

DATABASE = "treazrisland"


def main():
    output = os.path.join(REPO, "demo-output")
    os.makedirs(output, exist_ok=True)
    with PgCluster(name="demo-source") as source, PgCluster(name="demo-target") as target:
        print("demo: PostgreSQL clusters on 127.0.0.1:%d (source) and :%d (target)" % (source.port, target.port))
        source.create_database(DATABASE)
        with source.connect(DATABASE) as conn:
            populate(conn)
        print("demo: sample database %r loaded (enums, arrays, jsonb, 200,000 ROM rows, _prisma_migrations)"
              % DATABASE)
        # Passwords go to ansible in a 0600 file, never on a command line.
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump({"demo_source_dsn": source.dsn(DATABASE), "demo_target_dsn": target.dsn(DATABASE),
                       "demo_output": output}, handle)
        try:
            subprocess.run(["ansible-playbook", os.path.join(REPO, "sandbox", "demo.yml"), "-e", "@" + handle.name],
                           check=True, cwd=REPO)
        finally:
            os.unlink(handle.name)
        with source.connect(DATABASE) as a, target.connect(DATABASE) as b:
            before, after = table_fingerprints(a), table_fingerprints(b)
        for table, (rows, digest) in sorted(before.items()):
            print("demo: %-28s %7d rows  md5 %s  %s" % (table, rows, digest,
                                                      "identical" if after.get(table) == (rows, digest) else "DIFFERENT"))
        if before != after:
            sys.exit("demo: the restored database differs from the source")
        print("demo: restored database is identical to the source; clusters stopped. Backups in %s"
              % os.path.join(output, "backups"))


if __name__ == "__main__":
    main()
