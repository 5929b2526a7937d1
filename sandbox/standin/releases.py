"""Build the stand-in's release artifacts 1.4.0, 1.5.0 and a broken 1.6.0.

Laid out like a Treazrisland release where the upgrade touches it: the backend
under backend/ (its app, which reads backend/.env from its working directory,
its sparse sample backend/.env.example, the keys its code requires, Prisma
migrations under backend/prisma/migrations), the VERSION at the top and the
frontend asset tree under frontend/dist.

    1.4.0  3 migrations, 60 assets
    1.5.0  +3 migrations, a new env key (ROM_UPLOAD_LIMIT_MB), 10 assets changed, 5 added, 5 removed
    1.6.0  +1 migration, its health turns degraded (broken on purpose)
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))

MIGRATIONS = {
    "1.4.0": [
        ("20250101000000_init", 'CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL UNIQUE);'),
        ("20250201000000_rom", 'CREATE TABLE "Rom" (id serial PRIMARY KEY, title text NOT NULL, asset_uri text);'),
        ("20250301000000_save_state", 'CREATE TABLE "SaveState" (id serial PRIMARY KEY, user_id int REFERENCES '
                                      '"User"(id), rom_id int REFERENCES "Rom"(id), data_uri text);'),
    ],
    "1.5.0": [
        ("20250601000000_favorites", 'CREATE TABLE "Favorite" (user_id int REFERENCES "User"(id), rom_id int '
                                     'REFERENCES "Rom"(id), PRIMARY KEY (user_id, rom_id));'),
        ("20250701000000_rom_platform", 'ALTER TABLE "Rom" ADD COLUMN platform text NOT NULL DEFAULT \'NES\';'),
        ("20250801000000_user_display_name", 'ALTER TABLE "User" ADD COLUMN display_name text;'),
    ],
    "1.6.0": [
        ("20250901000000_achievements", 'CREATE TABLE "Achievement" (id serial PRIMARY KEY, name text);'),
    ],
}
ORDER = ["1.4.0", "1.5.0", "1.6.0"]

# Like the real backend/.env.example, the sample lists a few keys only; the code requires more.
SAMPLE_ENV = [
    ("NODE_ENV", "development", "Runtime environment"),
    ("PORT", "4000", "Port the backend listens on"),
    ("LOG_LEVEL", "info", "Log level"),
]
NEW_KEY = ("ROM_UPLOAD_LIMIT_MB", "512", "Largest ROM upload accepted")
# What the backend refuses to start without (the real one: "Invalid environment configuration").
REQUIRED_ENV = ["NODE_ENV", "PORT", "JWT_SECRET", "DATABASE_URL", "OBJECT_STORAGE_ENDPOINT", "OBJECT_STORAGE_PORT",
                "OBJECT_STORAGE_ACCESS_KEY", "OBJECT_STORAGE_SECRET_KEY", "OBJECT_STORAGE_BUCKET"]


def assets(version):
    """{relative path: bytes} of the frontend bundle of a release (deterministic)."""
    files = {}
    names = ["static/chunks/page-%02d.js" % n for n in range(40)] + ["images/art-%02d.png" % n for n in range(20)]
    if version != "1.4.0":
        names = names[5:] + ["static/chunks/netplay-%02d.js" % n for n in range(5)]
    for name in names:
        changed = version != "1.4.0" and name.endswith(("-10.js", "-11.js", "-12.js", "-13.js", "-14.js",
                                                          "-15.js", "-16.js", "-17.js", "-18.js", "-19.js"))
        seed = ("%s@%s" % (name, version if changed else "1.4.0")).encode()
        size = 200 + int(hashlib.sha256(seed).hexdigest()[:4], 16) * 3
        files["frontend/dist/" + name] = (hashlib.sha256(seed).hexdigest().encode() * (size // 64 + 1))[:size]
    files["frontend/dist/index.html"] = ("<html><body>Treazrisland %s</body></html>\n" % version).encode()
    return files


def release_files(version, version_of=None, overrides=None):
    """Files of a release; version_of builds another release's content under this version's name."""
    content = version_of or version
    files = {}
    with open(os.path.join(HERE, "app.py"), "rb") as handle:
        files["backend/app.py"] = handle.read()
    files["VERSION"] = (version + "\n").encode()
    keys = SAMPLE_ENV + ([NEW_KEY] if content != "1.4.0" else [])
    files["backend/.env.example"] = "".join("# %s\n%s=%s\n" % (doc, key, default)
                                            for key, default, doc in keys).encode()
    required = REQUIRED_ENV + ([NEW_KEY[0]] if content != "1.4.0" else [])
    files["backend/src/config/required-env.txt"] = ("\n".join(required) + "\n").encode()
    for release in ORDER[:ORDER.index(content) + 1]:
        for name, sql in MIGRATIONS[release]:
            files["backend/prisma/migrations/%s/migration.sql" % name] = (sql + "\n").encode()
    files["backend/prisma/migrations/migration_lock.toml"] = b'provider = "postgresql"\n'
    files.update(assets(content))
    if content == "1.6.0":
        files["backend/BROKEN"] = b"health turns degraded\n"
    files.update(overrides or {})
    return files


def build(version, directory, version_of=None, overrides=None):
    """Write treazrisland-<version>.tar.gz (reproducible: fixed times and owners); return its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "treazrisland-%s.tar.gz" % version)
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(release_files(version, version_of, overrides).items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1735689600, 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def build_all(directory):
    return {version: build(version, directory) for version in ORDER}


if __name__ == "__main__":
    for built in build_all(sys.argv[1] if len(sys.argv) > 1 else "dist").values():
        print(built)
