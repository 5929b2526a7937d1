# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""s3_sync: local tree <-> S3 prefix, or S3 -> S3, decided by content (sha256), never by mtime.

How a change is recognised without one HEAD per object: every object this module writes
carries its sha256 in its metadata, and a manifest object under the prefix
(``.treazrisland-sync.jsonl.gz``) records, for each relative path, the sha256, size and
ETag the object had after the upload, with its Content-Type, Cache-Control and encryption.
One listing plus one manifest read then tell, for each object, the sha256 of its content: an
object whose listed size and ETag still match its manifest record is the content recorded;
any other object (changed behind our back, or written by another tool) is of unknown
content and treated as changed.

Order of work: plan everything (fails before any change when a key is unsafe or
``max_delete`` would be exceeded), transfer, then delete only if every transfer succeeded,
then write the manifest. An interrupted run leaves every delete undone, and the next run
redoes only what is missing.
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import hashlib
import json
import mimetypes
import os
import re
import stat
import tempfile
import time
import zlib

from ansible_collections.treazrisland.ops.plugins.module_utils import hashcache, s3
from ansible_collections.treazrisland.ops.plugins.module_utils.checksum import HashingWriter, digest_chunks, read_chunks
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

MANIFEST_NAME = ".treazrisland-sync.jsonl.gz"
MANIFEST_FORMAT = "treazrisland.ops.s3_sync/1"
MANIFEST_BATCH = 2000  # manifest lines parsed at once
SHA256_METADATA = "sha256"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_COPY_OBJECT = 5 * 1024 ** 3  # larger objects need a multipart copy
MEMORY_BUDGET = 64 * s3.MIB  # file bytes held at once by all concurrent uploads
MULTIPART_PARTS_IN_FLIGHT = 4
DOWNLOADED_FILE_MODE = 0o644
DIFF_LIMIT = 20000  # lines of the diff; the lists in the result are always complete

# Python's built-in table only (never /etc/mime.types): the same answer on every host,
# plus the web types it lacks or words differently.
_MIME = mimetypes.MimeTypes()
for _extension, _type in {
    ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
    ".map": "application/json", ".wasm": "application/wasm", ".webp": "image/webp",
    ".avif": "image/avif", ".woff": "font/woff", ".woff2": "font/woff2", ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json", ".ico": "image/x-icon",
}.items():
    _MIME.add_type(_type, _extension)

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


# --------------------------------------------------------------------------- options


class Rules:
    """Which relative paths are in scope, and the headers each one gets."""

    def __init__(self, params):
        self.include = params.get("include") or []
        self.exclude = params.get("exclude") or []
        self.cache_control = [(rule["pattern"], rule["value"]) for rule in params.get("cache_control") or []]
        self.encryption = params.get("encryption") or ""
        self.kms_key_id = params.get("kms_key_id") or ""

    def in_scope(self, rel):
        """Patterns match the whole relative path; ``*`` also matches ``/``."""
        if rel == MANIFEST_NAME:
            return False
        if self.include and not any(fnmatch.fnmatchcase(rel, pattern) for pattern in self.include):
            return False
        return not any(fnmatch.fnmatchcase(rel, pattern) for pattern in self.exclude)

    def headers(self, rel):
        """(Content-Type, Cache-Control, encryption) an object at rel should have."""
        cache_control = next((value for pattern, value in self.cache_control
                              if fnmatch.fnmatchcase(rel, pattern)), "")
        return content_type_of(rel), cache_control, self.encryption


_CONTENT_TYPES = {}


def content_type_of(rel):
    """The Content-Type of a file name; it depends on its extensions only, so each is guessed once."""
    name = rel.rsplit("/", 1)[-1].lstrip(".")  # as splitext, leading dots are part of the name
    dot = name.find(".")
    extensions = name[dot:] if dot >= 0 else ""
    if extensions not in _CONTENT_TYPES:
        _CONTENT_TYPES[extensions] = _MIME.guess_type("file" + extensions, strict=False)[0] or DEFAULT_CONTENT_TYPE
    return _CONTENT_TYPES[extensions]


def parse_max_delete(value):
    """(count, percent) from V(100) or V(10%); (None, None) for no limit."""
    if value is None or str(value).strip() == "":
        return None, None
    text = str(value).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 <= percent <= 100:
                raise ValueError
            return None, percent
        count = int(text)
        if count < 0:
            raise ValueError
        return count, None
    except ValueError:
        raise OpsError("max_delete must be a count (100) or a percentage (10%%), not %r" % text)


# --------------------------------------------------------------------------- local side


class LocalTree:
    """The files of a local directory in scope, and the sha256 the checksum cache knows of them."""

    def __init__(self):
        self.files = {}  # rel -> size of each regular file
        self.links = []  # sorted rels of symlinks and special files
        self.known = {}  # rel -> sha256, from the checksum cache


def scan_local(root, rules, cache=None):
    """The LocalTree of root. Symlinks are never followed: a symlinked directory is one link entry.

    An unreadable directory is an error, never an empty one: in a sync with delete, what
    cannot be seen would be deleted at the destination.
    """
    tree = LocalTree()
    pending = [("", root)]
    while pending:
        prefix, directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    rel = prefix + entry.name
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((rel + "/", entry.path))
                    elif not rules.in_scope(rel):
                        continue
                    elif entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        tree.files[rel] = info.st_size
                        sha = cache.lookup(rel, info) if cache else None
                        if sha:
                            tree.known[rel] = sha
                    else:
                        tree.links.append(rel)
        except OSError as error:
            raise OpsError("cannot read the directory %s: %s" % (directory, error.strerror or error))
    tree.links.sort()
    return tree


def unsafe_rel(rel):
    """True for a relative path that could land outside the destination directory."""
    return (not rel or rel.startswith("/") or "\0" in rel
            or any(part in ("", ".", "..") for part in rel.split("/")))


def safe_target(root, rel):
    """root/rel, with its parent directories created; refuses any symlink on the way."""
    parts = rel.split("/")
    current = root
    for part in parts[:-1]:
        current = os.path.join(current, part)
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                pass  # another transfer made it just now
            info = os.lstat(current)
        if not stat.S_ISDIR(info.st_mode):
            raise OpsError("refusing to write %s: %s is not a directory (symlinks are never followed)" % (
                rel, current))
    target = os.path.join(current, parts[-1])
    if os.path.lexists(target) and not stat.S_ISREG(os.lstat(target).st_mode):
        raise OpsError("refusing to replace %s: it is not a regular file (symlinks are never followed)" % target)
    return target


def md5_file(path):
    with open(path, "rb") as handle:
        return digest_chunks(read_chunks(handle), "md5")[0]


# --------------------------------------------------------------------------- S3 side


class Listing:
    """The in-scope objects below a prefix: {rel: (size, etag)}; keys obstore cannot address."""

    def __init__(self):
        self.objects = {}
        self.unaddressable = set()  # rels with '', '.' or '..' segments (only boto3 can name them)


LIST_PAGE = 1000  # keys in one ListObjectsV2 answer
# Measured on 10,000 keys: 0.29 s listed in one chain, 0.21 s in 2 or 4 ranges, no better with 8 or
# 16; and every range holds a page of objects in memory at once (100,000 files: 176 MiB with 4
# ranges, 192 MiB with 16).
MAX_LIST_RANGES = 4


def list_objects(conn, location, rules, known=()):
    """List location with obstore; keys obstore refuses to parse make it list with boto3 instead.

    ``known``, the relative paths the manifest holds, splits the key space into ranges of at
    least a page, listed at once (at most MAX_LIST_RANGES): one listing is a chain of requests,
    each waiting for the last, and a no-change run spends most of its time waiting on it. The
    ranges cover every key whatever the bucket holds now; ``known`` only balances them.
    """
    listing = Listing()
    store = conn.store(location.bucket)
    try:
        bounds = _list_bounds(location, known)
        if len(bounds) == 2:
            _list_range(store, location, rules, listing, None, None)
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(bounds) - 1) as pool:
                ranges = [pool.submit(_list_range, store, location, rules, listing, bounds[i], bounds[i + 1])
                          for i in range(len(bounds) - 1)]
                for done in ranges:
                    done.result()
    except s3.obstore.exceptions.InvalidPathError:
        listing = Listing()
        paginator = conn.boto3().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.list_prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith("/"):
                    continue  # a console's "folder" placeholder
                _add(listing, location, rules, item["Key"], item["Size"], item["ETag"])
    # obstore drops the trailing "/" of folder placeholders: an empty "dir" beside "dir/..." is one.
    folders = {rel.rsplit("/", 1)[0] for rel in listing.objects if "/" in rel}
    for rel in [rel for rel, (size, _etag) in listing.objects.items() if size == 0 and rel in folders]:
        del listing.objects[rel]
    return listing


def _list_bounds(location, known):
    """[None, key, ..., None]: range i holds the keys after bounds[i] up to bounds[i + 1] included."""
    count = min(MAX_LIST_RANGES, -(-len(known) // LIST_PAGE))
    if count < 2:
        return [None, None]
    ordered = sorted(known)
    return [None] + [location.key(ordered[len(ordered) * i // count]) for i in range(1, count)] + [None]


def _list_range(store, location, rules, listing, after, upto):
    # S3 lists in the byte order of the UTF-8 keys, which is the order in which Python compares
    # the decoded strings: the first key past ``upto`` ends the range.
    options = {"offset": after} if after is not None else {}
    for chunk in s3.obstore.list(store, prefix=location.prefix or None, chunk_size=LIST_PAGE, **options):
        for meta in chunk:
            if upto is not None and meta["path"] > upto:
                return
            _add(listing, location, rules, meta["path"], meta["size"], meta["e_tag"])


def _add(listing, location, rules, key, size, etag):
    rel = location.rel(key)
    if rel is None or not rules.in_scope(rel):
        return
    listing.objects[rel] = (size, s3.normalize_etag(etag))
    if unsafe_rel(rel):
        listing.unaddressable.add(rel)


class Manifest:
    """{rel: (sha256, size, etag, content_type, cache_control, encryption)} of one prefix."""

    def __init__(self, records=None, problem=None):
        self.records = records or {}
        self.problem = problem

    def known_sha(self, rel, listed):
        """sha256 of the listed object when its record still matches it, else None."""
        record = self.records.get(rel)
        if record and listed and record[1] == listed[0] and record[2] == listed[1]:
            return record[0]
        return None

    def headers(self, rel):
        record = self.records.get(rel)
        return tuple(record[3:6]) if record else None


def read_manifest(conn, location):
    """The manifest of location, streamed and decompressed a chunk at a time; empty if none."""
    key = location.key(MANIFEST_NAME)
    try:
        result = s3.obstore.get(conn.store(location.bucket), key)
        reader = _ManifestReader()
        decompressor = zlib.decompressobj(wbits=31)
        pending = b""
        for chunk in result.stream(min_chunk_size=s3.MIB):
            lines = (pending + decompressor.decompress(bytes(chunk))).split(b"\n")
            pending = lines.pop()
            reader.add(lines)
        reader.add((pending + decompressor.flush()).split(b"\n"))
        if reader.header is None:
            raise ValueError("no header")
        return Manifest(reader.records)
    except Exception as error:  # pylint: disable=broad-except
        if s3.is_not_found(error):
            return Manifest()
        if isinstance(error, (ValueError, zlib.error, EOFError, TypeError, IndexError)):
            # Only costs time: every object becomes of unknown content and is transferred again.
            return Manifest(problem="the manifest %s is unreadable (%s); every object is compared as unknown"
                            % (s3.SCHEME + location.bucket + "/" + key, error))
        raise


class _ManifestReader:
    """Records from the manifest's lines: a header line, then one JSON array a file."""

    def __init__(self):
        self.header = None
        self.records = {}
        self._intern = {}

    def add(self, lines):
        lines = [line for line in lines if line.strip()]
        if lines and self.header is None:
            header = json.loads(lines.pop(0))
            if not isinstance(header, dict) or header.get("format") != MANIFEST_FORMAT:
                raise ValueError("not a %s manifest" % MANIFEST_FORMAT)
            self.header = header
        if not lines:
            return
        intern = self._intern
        # One json.loads for a batch of lines takes half the time of one a line.
        for start in range(0, len(lines), MANIFEST_BATCH):
            batch = json.loads(b"[" + b",".join(lines[start:start + MANIFEST_BATCH]) + b"]")
            for rel, sha, size, etag, content_type, cache_control, encryption in batch:
                # Many records share the same headers: keep one string each (memory at 100,000 files).
                self.records[rel] = (sha, int(size), etag, intern.setdefault(content_type, content_type),
                                     intern.setdefault(cache_control, cache_control),
                                     intern.setdefault(encryption, encryption))


def write_manifest(conn, location, rules, records):
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts = [compressor.compress(json.dumps({"format": MANIFEST_FORMAT, "files": len(records)}).encode() + b"\n")]
    for rel in sorted(records):
        parts.append(compressor.compress(json.dumps([rel] + list(records[rel]), separators=(",", ":")).encode()
                                         + b"\n"))
    parts.append(compressor.flush())
    store = conn.store(location.bucket, rules.encryption, rules.kms_key_id)
    s3.obstore.put(store, location.key(MANIFEST_NAME), b"".join(parts), use_multipart=False,
                   attributes={"Content-Type": "application/gzip", "Cache-Control": "no-store"})


# --------------------------------------------------------------------------- the plan


class Action:
    """One file to transfer: where from, where to, what is known of it."""

    __slots__ = ("rel", "size", "etag", "sha", "reason")

    def __init__(self, rel, size, etag=None, sha=None, reason="new"):
        self.rel = rel
        self.size = size
        self.etag = etag
        self.sha = sha
        self.reason = reason


class Plan:
    def __init__(self, direction):
        self.direction = direction
        self.transfers = []
        self.deletes = []  # (rel, size)
        self.unchanged = 0
        self.unchanged_bytes = 0
        self.scope_size = 0  # objects/files in scope at the destination, for max_delete in percent
        self.warnings = []


def check_max_delete(plan, params, dest_text):
    count, percent = parse_max_delete(params.get("max_delete"))
    wanted = len(plan.deletes)
    if not wanted:
        return
    limit = count if count is not None else (
        None if percent is None else int(plan.scope_size * percent / 100.0))
    if limit is not None and wanted > limit:
        what = "max_delete=%s" % params["max_delete"]
        if percent is not None:
            what += " (%d of the %d in scope)" % (limit, plan.scope_size)
        raise OpsError("refusing to delete %d file(s) from %s: more than %s; nothing was changed"
                       % (wanted, dest_text, what), would_delete=sorted(rel for rel, _size in plan.deletes))


def _sha_many(cache, root, rels, hashes, until=None):
    """Add to hashes {rel: sha256} the local files rels that it lacks, read through the cache.

    One thread: with files of tens of kilobytes, a second hashing thread costs more in GIL
    handoffs than it gains (measured: 0.5 s alone, 0.8 s with two threads for 10,000 files,
    356 MB). With ``until`` (a future), stops as soon as it is done: hashing is done
    speculatively while the listing is on its way.
    """
    for rel in rels:
        if until is not None and until.done():
            break
        if rel not in hashes:
            hashes[rel] = cache.hash(rel, os.path.join(root, rel))
    return hashes


def _read_remote(conn, location, rules, pool):
    """A future of (Listing, Manifest) of location: the manifest, then the listing it splits."""

    def read():
        manifest = read_manifest(conn, location)
        return list_objects(conn, location, rules, known=manifest.records), manifest

    return pool.submit(read)


def plan_upload(conn, root, location, rules, params, threshold, cache):
    # The listing waits on the server: walk the local tree meanwhile, then hash what the
    # cache does not know (a no-change run needs every sha256) until the listing and the
    # manifest have arrived.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as background:
        remote = _read_remote(conn, location, rules, background)
        tree = scan_local(root, rules, cache)
        if tree.links:
            remote.exception()  # let the requests finish before failing
            raise OpsError("%s holds symlinks or special files, which s3_sync never follows: %s; exclude them"
                           % (root, _names(tree.links)))
        local, hashes = tree.files, tree.known
        _sha_many(cache, root, local, hashes, until=remote)
        listing, manifest = remote.result()
    plan = Plan("upload")
    plan.scope_size = len(listing.objects)
    if manifest.problem:
        plan.warnings.append(manifest.problem)

    # Hash the rest of what must be compared, and big new files (their sha256 goes in the
    # metadata before the first part is sent); small new files are hashed from the bytes sent.
    _sha_many(cache, root, [rel for rel, size in local.items() if rel not in hashes and (
        size > threshold or manifest.known_sha(rel, listing.objects.get(rel)))], hashes)

    for rel in sorted(local):
        size = local[rel]
        listed = listing.objects.get(rel)
        known = manifest.known_sha(rel, listed)
        if listed is None:
            plan.transfers.append(Action(rel, size, sha=hashes.get(rel), reason="new"))
        elif known is None:
            plan.transfers.append(Action(rel, size, sha=hashes.get(rel), reason="unknown content at destination"))
        elif known != hashes[rel]:
            plan.transfers.append(Action(rel, size, sha=hashes[rel], reason="content changed"))
        elif manifest.headers(rel) != rules.headers(rel):
            plan.transfers.append(Action(rel, size, sha=hashes[rel], reason="headers changed"))
        else:
            plan.unchanged += 1
            plan.unchanged_bytes += size
    if params["delete"]:
        plan.deletes = sorted((rel, size) for rel, (size, _etag) in listing.objects.items() if rel not in local)
    return plan, listing, manifest


def plan_download(conn, location, root, rules, params, cache):
    if os.path.lexists(root) and not os.path.isdir(root):
        raise OpsError("%s exists and is not a directory" % root)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as background:
        remote = _read_remote(conn, location, rules, background)
        tree = scan_local(root, rules, cache) if os.path.isdir(root) else LocalTree()
        local, links = tree.files, tree.links
        listing, manifest = remote.result()
    unsafe = sorted(listing.unaddressable)
    if unsafe:
        raise OpsError("refusing to download keys that would land outside %s: %s; exclude them"
                       % (root, _names([location.key(rel) for rel in unsafe])))
    plan = Plan("download")
    plan.scope_size = len(local) + len(links)
    if manifest.problem:
        plan.warnings.append(manifest.problem)
    link_set = set(links)
    _refuse_symlinked_parents(root, listing.objects)

    hashes = _sha_many(cache, root, [rel for rel, (size, _etag) in listing.objects.items()
                                     if local.get(rel) == size and manifest.known_sha(rel, listing.objects[rel])],
                       tree.known)
    for rel in sorted(listing.objects):
        size, etag = listing.objects[rel]
        known = manifest.known_sha(rel, (size, etag))
        if rel in link_set:
            raise OpsError("refusing to replace %s: it is not a regular file (symlinks are never followed); "
                           "nothing was changed" % os.path.join(root, rel))
        if rel not in local:
            reason = "new"
        elif local[rel] != size:
            reason = "size differs"
        elif known is not None:
            reason = None if hashes[rel] == known else "content changed"
        elif _PLAIN_MD5.match(etag):
            # An object of another tool: its single-part ETag is the MD5 of its content.
            reason = None if md5_file(os.path.join(root, rel)) == etag else "content changed"
        else:
            reason = "unknown content at source"
        if reason:
            plan.transfers.append(Action(rel, size, etag=etag, sha=known, reason=reason))
        else:
            plan.unchanged += 1
            plan.unchanged_bytes += size
    if params["delete"]:
        plan.deletes = sorted([(rel, size) for rel, size in local.items() if rel not in listing.objects]
                              + [(rel, 0) for rel in links if rel not in listing.objects])
    return plan, listing, manifest


def _refuse_symlinked_parents(root, rels):
    """Fail before any write when a download would go through a symlink (or a file) in root."""
    checked = {}
    for rel in sorted(rels):
        parts = rel.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent not in checked:
                try:
                    checked[parent] = stat.S_ISDIR(os.lstat(os.path.join(root, parent)).st_mode)
                except FileNotFoundError:
                    checked[parent] = True
            if not checked[parent]:
                raise OpsError("refusing to download %s: %s is not a directory (symlinks are never followed); "
                               "nothing was changed" % (rel, os.path.join(root, parent)))


def plan_copy(conn, src, dest, rules, params):
    src_manifest = read_manifest(conn, src)
    src_listing = list_objects(conn, src, rules, known=src_manifest.records)
    if src_listing.unaddressable:
        raise OpsError("refusing to copy keys with empty, '.' or '..' path segments: %s; exclude them"
                       % _names([src.key(rel) for rel in sorted(src_listing.unaddressable)]))
    dest_manifest = read_manifest(conn, dest)
    dest_listing = list_objects(conn, dest, rules, known=dest_manifest.records)
    plan = Plan("copy")
    plan.scope_size = len(dest_listing.objects)
    plan.warnings.extend(m.problem for m in (src_manifest, dest_manifest) if m.problem)

    # Source objects of unknown content are read once to learn their sha256 (nothing is stored).
    unknown = [rel for rel, listed in src_listing.objects.items() if src_manifest.known_sha(rel, listed) is None]
    store = conn.store(src.bucket)
    learned = {}
    for rel, result, error in s3.bounded_map(lambda rel: s3.sha256_of_object(store, src.key(rel)), unknown,
                                             conn.concurrency):
        if error:
            raise OpsError("cannot read %s: %s" % (src.key(rel), s3.describe_error(error, conn.secrets)))
        learned[rel] = result
    for rel in sorted(src_listing.objects):
        size, etag = src_listing.objects[rel]
        sha = src_manifest.known_sha(rel, (size, etag)) or learned[rel]
        dest_sha = dest_manifest.known_sha(rel, dest_listing.objects.get(rel))
        if rel not in dest_listing.objects:
            reason = "new"
        elif dest_sha is None:
            reason = "unknown content at destination"
        elif dest_sha != sha:
            reason = "content changed"
        elif dest_manifest.headers(rel) != rules.headers(rel):
            reason = "headers changed"
        else:
            plan.unchanged += 1
            plan.unchanged_bytes += size
            continue
        plan.transfers.append(Action(rel, size, etag=etag, sha=sha, reason=reason))
    if params["delete"]:
        plan.deletes = sorted((rel, size) for rel, (size, _etag) in dest_listing.objects.items()
                              if rel not in src_listing.objects)
    return plan, dest_listing, dest_manifest


# --------------------------------------------------------------------------- transfers


class HashingChunks:
    """Iterator over a file's chunks that hashes them as obstore sends them (multipart)."""

    def __init__(self, path, chunk_size):
        self._handle = open(path, "rb")
        self._chunk_size = chunk_size
        self._hash = hashlib.sha256()

    def __iter__(self):
        return self

    def __next__(self):
        chunk = self._handle.read(self._chunk_size)
        if not chunk:
            self._handle.close()
            raise StopIteration
        self._hash.update(chunk)
        return chunk

    def hexdigest(self):
        return self._hash.hexdigest()

    def close(self):
        self._handle.close()


def _attributes(headers, sha):
    content_type, cache_control, _encryption = headers
    attributes = {"Content-Type": content_type, SHA256_METADATA: sha}
    if cache_control:
        attributes["Cache-Control"] = cache_control
    return attributes


def upload_one(conn, store, root, location, rules, action, threshold, budget):
    """Upload one file; return its manifest record."""
    path = os.path.join(root, action.rel)
    key = location.key(action.rel)
    headers = rules.headers(action.rel)
    if action.size <= threshold:
        budget.acquire(action.size)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            # The sha256 of the very bytes sent, whatever the file held at planning time.
            sha = hashlib.sha256(data).hexdigest()
            result = s3.obstore.put(store, key, data, attributes=_attributes(headers, sha), use_multipart=False)
            etag = s3.normalize_etag(result["e_tag"])
            size = len(data)
        finally:
            budget.release(action.size)
        return (sha, size, etag) + headers
    in_flight = threshold * MULTIPART_PARTS_IN_FLIGHT
    budget.acquire(in_flight)
    chunks = HashingChunks(path, threshold)
    try:
        s3.obstore.put(store, key, chunks, attributes=_attributes(headers, action.sha), chunk_size=threshold,
                       max_concurrency=MULTIPART_PARTS_IN_FLIGHT)
    finally:
        chunks.close()
        budget.release(in_flight)
    if chunks.hexdigest() != action.sha:
        # The metadata says action.sha; no manifest record, so the next run sends it again.
        raise OpsError("%s changed while it was uploaded; run again" % path)
    # Some servers answer a multipart upload with an ETag their listings never show (rclone):
    # the manifest must hold the listed one.
    meta = s3.obstore.head(store, key)
    return (action.sha, action.size, s3.normalize_etag(meta["e_tag"])) + headers


def download_one(conn, store, location, root, action):
    """Download one object to root/rel through a temporary file; return (sha256, size)."""
    target = safe_target(root, action.rel)
    directory, name = os.path.split(target)
    fd, temp_path = tempfile.mkstemp(prefix="." + name + ".", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            writer = HashingWriter(handle)
            for chunk in s3.obstore.get(store, location.key(action.rel)).stream(min_chunk_size=s3.MIB):
                writer.write(chunk)
        if action.sha and writer.hexdigest() != action.sha:
            raise OpsError("%s has sha256 %s, but its manifest says %s; it was not written"
                           % (location.key(action.rel), writer.hexdigest(), action.sha))
        os.chmod(temp_path, DOWNLOADED_FILE_MODE)
        # No fsync per file (1.7 ms each, 17 s for 10,000 files): one sync when all are written.
        os.rename(temp_path, target)
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise
    return writer.hexdigest(), writer.size


def copy_one(conn, src, dest, rules, action):
    """Server-side copy with the destination's headers and the sha256 in its metadata."""
    client = conn.boto3()
    content_type, cache_control, encryption = rules.headers(action.rel)
    extra = {"MetadataDirective": "REPLACE", "Metadata": {SHA256_METADATA: action.sha}, "ContentType": content_type}
    if cache_control:
        extra["CacheControl"] = cache_control
    if encryption:
        extra["ServerSideEncryption"] = encryption
        if rules.kms_key_id:
            extra["SSEKMSKeyId"] = rules.kms_key_id
    source = {"Bucket": src.bucket, "Key": src.key(action.rel)}
    if action.size > MAX_COPY_OBJECT:
        client.copy(source, dest.bucket, dest.key(action.rel), ExtraArgs=extra)
    else:
        client.copy_object(Bucket=dest.bucket, Key=dest.key(action.rel), CopySource=source, **extra)


def delete_keys(conn, location, rels):
    """DeleteObjects, 1000 keys a request; boto3 because it can name any key."""
    client = conn.boto3()
    failed = []
    keys = [location.key(rel) for rel in rels]
    for start in range(0, len(keys), 1000):
        batch = keys[start:start + 1000]
        answer = client.delete_objects(Bucket=location.bucket, Delete={
            "Objects": [{"Key": key} for key in batch], "Quiet": True})
        failed.extend("%s (%s)" % (error.get("Key"), error.get("Code")) for error in answer.get("Errors", []))
    if failed:
        raise OpsError("could not delete %d object(s) from %s: %s" % (len(failed), location, _names(failed)))


def delete_local(root, rels):
    directories = set()
    for rel in rels:
        path = os.path.join(root, rel)
        os.unlink(path)  # a symlink is removed itself, never its target
        directories.add(os.path.dirname(path))
    # Directories the deletes left empty go too, deepest first; the root stays.
    root_abs = os.path.abspath(root)
    for directory in sorted(directories, key=len, reverse=True):
        while os.path.abspath(directory) != root_abs:
            try:
                os.rmdir(directory)
            except OSError:
                break
            directory = os.path.dirname(directory)


# --------------------------------------------------------------------------- the service


def s3_sync(params, check_mode):
    """The s3_sync module's service: plan, transfer, delete, record; see the module docs."""
    started = time.monotonic()
    src, dest = s3.parse_location(params["src"]), s3.parse_location(params["dest"])
    src_text = params["src"] if src else os.path.expanduser(params["src"])
    dest_text = params["dest"] if dest else os.path.expanduser(params["dest"])
    if src is None and dest is None:
        raise OpsError("one of src and dest must be an s3:// location (both are local paths)")
    s3.require_libraries(boto=True, data_plane=True)
    rules = Rules(params)
    parse_max_delete(params.get("max_delete"))  # a typo fails before anything is listed
    if rules.kms_key_id and rules.encryption != "aws:kms":
        raise OpsError("kms_key_id needs encryption=aws:kms")
    threshold = params["multipart_chunk_size_mb"] * s3.MIB
    if threshold < 5 * s3.MIB:
        raise OpsError("multipart_chunk_size_mb must be at least 5 (the S3 minimum part size)")
    conn = s3.S3Connection(params, concurrency=params["concurrency"])
    try:
        cache = None
        if src is None:
            root = src_text
            if not os.path.isdir(root):
                raise OpsError("src %s is not a directory" % root)
            cache = _checksum_cache(params, root, rules)
            plan, listing, manifest = plan_upload(conn, root, dest, rules, params, threshold, cache)
        elif dest is None:
            cache = _checksum_cache(params, dest_text, rules)
            plan, listing, manifest = plan_download(conn, src, dest_text, rules, params, cache)
        else:
            if src.bucket == dest.bucket and _overlaps(src.prefix, dest.prefix):
                raise OpsError("src %s and dest %s overlap" % (src, dest))
            plan, listing, manifest = plan_copy(conn, src, dest, rules, params)
        if cache is not None:
            # What the cache learnt holds whatever the transfers do; check mode writes nothing.
            plan.warnings.extend(problem for problem in (cache.problem, cache.finish(write=not check_mode)) if problem)
        check_max_delete(plan, params, dest_text)
        result = _summary(plan, src_text, dest_text, dest)
        result["checksums"] = cache.summary() if cache is not None else None
        if check_mode or not (plan.transfers or plan.deletes):
            result["changed"] = bool(plan.transfers or plan.deletes)
        else:
            _execute(conn, plan, src, dest, src_text, dest_text, rules, threshold, listing, manifest)
            result["changed"] = True
    except OpsError:
        raise
    except Exception as error:  # boto3, obstore and network errors, worded once
        raise OpsError("s3_sync %s -> %s failed: %s" % (src_text, dest_text, s3.describe_error(error, conn.secrets)))
    result["duration_seconds"] = round(time.monotonic() - started, 3)
    result["msg"] = _message(result, check_mode)
    return result


def _checksum_cache(params, root, rules):
    return hashcache.HashCache(params.get("checksum_cache_dir"), root, scope=[rules.include, rules.exclude],
                               enabled=params.get("checksum_cache", True))


def _overlaps(a, b):
    return not a or not b or a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _execute(conn, plan, src, dest, src_text, dest_text, rules, threshold, listing, manifest):
    failures = []
    recorded = {}
    if plan.direction == "upload":
        store = conn.store(dest.bucket, rules.encryption, rules.kms_key_id)
        budget = s3.ByteBudget(MEMORY_BUDGET)
        outcomes = s3.bounded_map(lambda action: upload_one(conn, store, src_text, dest, rules, action, threshold,
                                                            budget), plan.transfers, conn.concurrency)
    elif plan.direction == "download":
        os.makedirs(dest_text, exist_ok=True)
        store = conn.store(src.bucket)
        outcomes = s3.bounded_map(lambda action: download_one(conn, store, src, dest_text, action),
                                  plan.transfers, conn.concurrency)
    else:
        outcomes = s3.bounded_map(lambda action: copy_one(conn, src, dest, rules, action), plan.transfers,
                                  conn.concurrency)
    check_encryption = bool(dest is not None and rules.encryption)
    for action, record, error in outcomes:
        if error:
            # Requests were already retried; a server that is gone would fail every
            # remaining transfer one timeout at a time, so none is started any more.
            failures.append((action.rel, error))
            outcomes.close()
            break
        recorded[action.rel] = record if plan.direction == "upload" else True
        if check_encryption:
            # Some S3-compatible servers ignore the encryption headers: check the first object,
            # before a whole backup is written in the clear.
            check_encryption = False
            applied = conn.boto3().head_object(Bucket=dest.bucket, Key=dest.key(action.rel)).get(
                "ServerSideEncryption")
            if applied != rules.encryption:
                outcomes.close()
                # No manifest: what was written is of unknown content and is sent again next time.
                raise OpsError("%s stored %s without the requested encryption %s (it reports %s); stopped after "
                               "%d of %d transfer(s), nothing was deleted" % (
                                   dest_text, dest.key(action.rel), rules.encryption, applied or "none",
                                   len(recorded), len(plan.transfers)),
                               transferred=sorted(recorded))
    if plan.direction == "download" and recorded:
        os.sync()  # durability for every file renamed above, at once

    if dest is not None:
        records = _manifest_after(conn, plan, dest, rules, listing, manifest, recorded, failures)
    if failures:
        if dest is not None:
            try:
                write_manifest(conn, dest, rules, records)
            except Exception:  # pylint: disable=broad-except
                pass  # the server may be gone; the next run re-uploads what it cannot prove
        rel, error = failures[0]
        first = error.msg if isinstance(error, OpsError) else s3.describe_error(error, conn.secrets)
        raise OpsError("sync from %s to %s stopped after %d of %d transfer(s): %s: %s; nothing was deleted, "
                       "run again to finish" % (src_text, dest_text, len(recorded), len(plan.transfers), rel, first),
                       failed=sorted(rel for rel, _error in failures),
                       transferred=sorted(recorded))
    if plan.deletes:
        rels = [rel for rel, _size in plan.deletes]
        if dest is None:
            delete_local(dest_text, rels)
        else:
            delete_keys(conn, dest, rels)
            for rel in rels:
                records.pop(rel, None)
    if dest is not None:
        write_manifest(conn, dest, rules, records)


def _manifest_after(conn, plan, dest, rules, listing, manifest, recorded, failures):
    """The destination's records once the transfers are done."""
    records = {rel: manifest.records[rel] for rel, listed in listing.objects.items()
               if manifest.known_sha(rel, listed) is not None}
    if plan.direction == "upload":
        records.update(recorded)
        return records
    # Server-side copies: the ETag a copy gets is the server's choice; one more listing says it.
    fresh = list_objects(conn, dest, rules).objects if recorded else {}
    by_rel = {action.rel: action for action in plan.transfers}
    for rel in recorded:
        if rel in fresh:
            size, etag = fresh[rel]
            records[rel] = (by_rel[rel].sha, size, etag) + rules.headers(rel)
    failed = {rel for rel, _error in failures}
    for rel in failed:
        records.pop(rel, None)
    return records


def _summary(plan, src_text, dest_text, dest):
    verb = {"upload": "uploaded", "download": "downloaded", "copy": "copied"}[plan.direction]
    transferred = [action.rel for action in plan.transfers]
    deleted = [rel for rel, _size in plan.deletes]
    lists = {"uploaded": [], "downloaded": [], "copied": []}
    lists[verb] = transferred
    changed = transferred + deleted
    result = dict(
        src=src_text, dest=dest_text, direction=plan.direction, deleted=deleted,
        counts={"uploaded": 0, "downloaded": 0, "copied": 0, verb: len(transferred), "deleted": len(deleted),
                "unchanged": plan.unchanged},
        bytes={"uploaded": 0, "downloaded": 0, "copied": 0, verb: sum(a.size for a in plan.transfers),
               "deleted": sum(size for _rel, size in plan.deletes), "unchanged": plan.unchanged_bytes},
        changed_keys=sorted(dest.key(rel) for rel in changed) if dest is not None else sorted(changed),
        **lists)
    if plan.warnings:
        result["warnings"] = plan.warnings
    if changed:
        lines = ["%-8s %s (%d bytes, %s)" % (plan.direction, a.rel, a.size, a.reason) for a in plan.transfers]
        lines += ["delete   %s" % rel for rel in deleted]
        more = len(lines) - DIFF_LIMIT
        lines = lines[:DIFF_LIMIT] + (["... and %d more" % more] if more > 0 else [])
        result["diff"] = {"prepared": "%s -> %s\n%s\n" % (src_text, dest_text, "\n".join(lines))}
    return result


def _message(result, check_mode):
    counts, sizes = result["counts"], result["bytes"]
    verb = {"upload": "uploaded", "download": "downloaded", "copy": "copied"}[result["direction"]]
    would = "would have " if check_mode else ""
    return "%s%s %d file(s) (%d bytes) and deleted %d; %d unchanged" % (
        would, verb, counts[verb], sizes[verb], counts["deleted"], counts["unchanged"])


def _names(items, limit=5):
    items = list(items)
    more = " and %d more" % (len(items) - limit) if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
