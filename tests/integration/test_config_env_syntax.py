"""config_apply writes .env values that Treazrisland reads exactly as given (issue 15, point 4).

The written files are read by the real parsers: Node's dotenv 8.6.0 (under dotenv-flow 3.3.0, as the
backend loads its backend/.env) and dotenv 16, installed from the npm registry at the versions of
tests/node/package-lock.json into .build/node by sandbox/setup.sh, and python-dotenv. Node runs once
per test and reads every key at once.
"""

from __future__ import annotations

import json
import os
import random
import subprocess

from dotenv import dotenv_values
from helpers import REPO, run_tasks

from ansible_collections.treazrisland.ops.plugins.module_utils.config_node_dotenv import parse_dotenv8, parse_dotenv16

NODE_MODULES = os.path.join(REPO, ".build", "node", "node_modules")

# argv: node_modules, then a JSON file {"files": [...], "keys": [...]} and the JSON file to write.
# For each file: dotenv 8.6.0's and dotenv 16's parse(), dotenv-flow's parse(), and dotenv-flow's
# config() from the file's directory (the backend's `node dist/src/index.js` in backend/).
READ_JS = r"""
const fs = require('fs');
const path = require('path');
const [modules, requestFile, outFile] = process.argv.slice(2);
const request = JSON.parse(fs.readFileSync(requestFile, 'utf8'));
const version = (name) => JSON.parse(fs.readFileSync(path.join(modules, name, 'package.json'), 'utf8')).version;
const pick = (parsed) => Object.fromEntries(
  request.keys.filter((key) => Object.prototype.hasOwnProperty.call(parsed, key)).map((key) => [key, parsed[key]]));
const dotenv8 = require('dotenv8');
const dotenv16 = require('dotenv16');
const flow = require('dotenv-flow');
const out = {
  versions: {dotenv8: version('dotenv8'), dotenv16: version('dotenv16'), 'dotenv-flow': version('dotenv-flow'),
             'dotenv under dotenv-flow': version('dotenv')},
  files: {},
};
for (const file of request.files) {
  const read = {
    'dotenv 8.6.0': pick(dotenv8.parse(fs.readFileSync(file))),
    'dotenv 16': pick(dotenv16.parse(fs.readFileSync(file))),
    'dotenv-flow parse': pick(flow.parse(file)),
  };
  request.keys.forEach((key) => { delete process.env[key]; });
  process.chdir(path.dirname(file));
  const loaded = flow.config();
  if (loaded.error) throw loaded.error;
  read['dotenv-flow config'] = pick(process.env);
  out.files[file] = read;
}
fs.writeFileSync(outFile, JSON.stringify(out));
"""


def node_read(workdir, files, keys):
    """{file: {parser: {key: value}}} as the real Node parsers read each file; one node run."""
    assert os.path.isdir(NODE_MODULES), "the Node dotenv parsers are missing: run bash sandbox/setup.sh"
    script, request, out = (os.path.join(workdir, name) for name in ("read.js", "request.json", "out.json"))
    with open(script, "w") as handle:
        handle.write(READ_JS)
    with open(request, "w") as handle:
        json.dump({"files": [str(file) for file in files], "keys": sorted(keys)}, handle)
    env = {key: value for key, value in os.environ.items() if key != "NODE_ENV" and key not in keys}
    env["NODE_PATH"] = NODE_MODULES
    subprocess.run(["node", script, NODE_MODULES, request, out], env=env, check=True, timeout=60)
    with open(out) as handle:
        found = json.load(handle)
    assert found["versions"] == {"dotenv8": "8.6.0", "dotenv16": "16.6.1", "dotenv-flow": "3.3.0",
                                 "dotenv under dotenv-flow": "8.6.0"}
    return found["files"]


def python_read(path):
    return dotenv_values(path, interpolate=False)


# The awkward values: each is written the way every parser reads it back unchanged.
AWKWARD = {
    "AWK_QUOTES": "a\"b'c",
    "AWK_DOUBLE_QUOTED_WORD": '"quoted"',
    "AWK_SINGLE_QUOTED_WORD": "'quoted'",
    "AWK_BACKSLASHES": "back\\\\slash",
    "AWK_TRAILING_BACKSLASH": "C:\\dir\\",
    "AWK_ESCAPED_QUOTES": 'say \\"hi\\"',
    "AWK_HASH": "#hash",
    "AWK_SPACE_HASH": "value #not a comment",
    "AWK_DOLLAR": "$HOME/cost$5",
    "AWK_REFERENCE": "${POSTGRES_USER}",
    "AWK_EQUALS": "a=b==c",
    "AWK_PADDED": "  padded  ",
    "AWK_PADDED_BACKSLASH": " C:\\dir 'x' ",
    "AWK_UNICODE": "ünïcödé ✓ 日本語",
    "AWK_NEWLINES": "line one\nline two",
    "AWK_NEWLINE_AND_QUOTE": "it's\nmulti-line",
    "AWK_TAB": "tab\there",
    "AWK_BACKTICK": "`cmd`",
    "AWK_EMPTY": "",
    "AWK_JWT_LIKE": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0In0/Ab+cD9==",
}

LIVE = """\
# Treazrisland backend, read by dotenv-flow from backend/
NODE_ENV=production
export PORT=4000
SINGLE_QUOTED='old'
DOUBLE_QUOTED="old"
COMMENTED=old  # set by hand
UNTOUCHED=kept   # dotenv 8 reads this comment as part of the value
"""
# Existing keys changed in place: their quoting is kept where the value allows.
UPDATES = {"PORT": "4001", "SINGLE_QUOTED": "  spaced ${X} #1  ", "DOUBLE_QUOTED": "line one\nit's",
           "COMMENTED": "back\\\\slash"}

WRITTEN = """\
# Treazrisland backend, read by dotenv-flow from backend/
NODE_ENV=production
PORT=4001
SINGLE_QUOTED='  spaced ${X} #1  '
DOUBLE_QUOTED="line one\\nit's"
# set by hand
COMMENTED=back\\\\slash
UNTOUCHED=kept   # dotenv 8 reads this comment as part of the value
AWK_QUOTES=a"b'c
AWK_DOUBLE_QUOTED_WORD='"quoted"'
AWK_SINGLE_QUOTED_WORD="'quoted'"
AWK_BACKSLASHES=back\\\\slash
AWK_TRAILING_BACKSLASH=C:\\dir\\
AWK_ESCAPED_QUOTES=say \\"hi\\"
AWK_HASH='#hash'
AWK_SPACE_HASH='value #not a comment'
AWK_DOLLAR=$HOME/cost$5
AWK_REFERENCE='${POSTGRES_USER}'
AWK_EQUALS=a=b==c
AWK_PADDED='  padded  '
AWK_PADDED_BACKSLASH=" C:\\dir 'x' "
AWK_UNICODE=ünïcödé ✓ 日本語
AWK_NEWLINES="line one\\nline two"
AWK_NEWLINE_AND_QUOTE="it's\\nmulti-line"
AWK_TAB=tab\there
AWK_BACKTICK='`cmd`'
AWK_EMPTY=
AWK_JWT_LIKE=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0In0/Ab+cD9==
"""


def test_awkward_values_are_read_exactly_by_node_dotenv_and_python_dotenv(tmp_path):
    backend = tmp_path / "backend"
    backend.mkdir()
    env_file = backend / ".env"
    env_file.write_text(LIVE)
    args = {"source": {"type": "env_file", "path": str(env_file)}, "values": dict(UPDATES, **AWKWARD)}
    run = run_tasks([{"name": "apply", "treazrisland.ops.config_apply": args},
                     {"name": "apply again", "treazrisland.ops.config_apply": args}])
    first, second = (entry["result"] for entry in run.results)
    assert first["changed"] is True and second["changed"] is False, run.output[-3000:]
    assert first["updated"] == list(UPDATES) and first["added"] == list(AWKWARD)
    assert env_file.read_text() == WRITTEN

    intended = dict(UPDATES, **AWKWARD)
    readings = node_read(str(tmp_path), [env_file], set(intended) | {"NODE_ENV", "UNTOUCHED"})[str(env_file)]
    readings["python-dotenv"] = python_read(env_file)
    for parser, values in readings.items():
        for key, value in intended.items():
            assert values.get(key) == value, (parser, key)
        assert values["NODE_ENV"] == "production", parser
    # The untouched line means what it meant before: its comment is part of the value for dotenv 8 only.
    assert readings["dotenv-flow config"]["UNTOUCHED"] == "kept   # dotenv 8 reads this comment as part of the value"
    assert readings["dotenv 16"]["UNTOUCHED"] == readings["python-dotenv"]["UNTOUCHED"] == "kept"


UNWRITABLE = {
    "UNW_BOTH_QUOTES": "'both\" quotes'",
    "UNW_CARRIAGE_RETURN": "a\rb",
    "UNW_LINE_SEPARATOR": "a\u2028b",
    "UNW_NEWLINE_AND_BACKSLASHES": "line\nand back\\\\slash",
    "UNW_QUOTE_AND_REFERENCE": "it's ${X}",
}


def test_a_value_no_form_holds_fails_naming_its_key_and_writes_nothing_and_python_syntax_keeps_escapes(tmp_path):
    backend = tmp_path / "backend"
    backend.mkdir()
    env_file = backend / ".env"
    env_file.write_bytes(LIVE.encode())
    worker = tmp_path / "worker"
    worker.mkdir()
    python_file = worker / ".env"
    python_file.write_text("WORKER=1\n")
    values = dict({"PORT": " it's \"x\" "}, **UNWRITABLE)
    tasks = [
        {"name": "refused", "ignore_errors": True, "treazrisland.ops.config_apply":
            {"source": {"type": "env_file", "path": str(env_file)}, "values": values}},
        {"name": "python-dotenv syntax", "treazrisland.ops.config_apply":
            {"source": {"type": "env_file", "path": str(python_file)}, "env_syntax": "python_dotenv",
             "values": {"AWK_QUOTES": AWKWARD["AWK_QUOTES"], "AWK_BACKSLASHES": AWKWARD["AWK_BACKSLASHES"]}}},
    ]
    run = run_tasks(tasks)
    refused, python_syntax = (entry["result"] for entry in run.results)
    assert refused["msg"] == (
        "%s: the value of PORT, %s cannot be written so that Node's dotenv reads it exactly as given (env_syntax "
        "node_dotenv; see the option's documentation for the values it can hold); nothing was written"
        % (env_file, ", ".join(UNWRITABLE)))
    assert env_file.read_bytes() == LIVE.encode()
    assert sorted(os.listdir(backend)) == [".env"]  # no backup, no temporary file
    assert not any(value in refused["msg"] for value in values.values())

    # python_dotenv: python-dotenv's escapes, which Node's dotenv keeps as written.
    assert python_syntax["changed"] is True, run.output[-3000:]
    assert python_file.read_text() == "WORKER=1\nAWK_QUOTES=\"a\\\"b'c\"\nAWK_BACKSLASHES=\"back\\\\\\\\slash\"\n"
    assert python_read(python_file)["AWK_QUOTES"] == AWKWARD["AWK_QUOTES"]
    assert python_read(python_file)["AWK_BACKSLASHES"] == AWKWARD["AWK_BACKSLASHES"]
    node = node_read(str(tmp_path), [python_file], {"AWK_QUOTES", "AWK_BACKSLASHES"})[str(python_file)]
    assert node["dotenv-flow config"] == {"AWK_QUOTES": "a\\\"b'c", "AWK_BACKSLASHES": "back\\\\\\\\slash"}


def test_the_python_port_reads_random_files_as_the_real_node_parsers(tmp_path):
    """module_utils/config_node_dotenv.py against dotenv 8.6.0 and 16 on random files full of quotes,
    escapes, comments, export, CR, U+2028 and JavaScript-only whitespace."""
    rng = random.Random(15)
    pieces = ["A", "x.y", "=", " = ", ": ", "'", '"', "`", "\\", "\\n", "\\r", "\\'", '\\"', "#", " #", "\n", "\r",
              "\r\n", " ", "\t", "\u2028", "\ufeff", "\xa0", "\x1c", "\x85", "é", "${X}", "val ue"]
    files = []
    for number in range(300):
        lines = [rng.choice(["A", "B_1", "x.y", " K", "export C"]) + rng.choice(["=", " = ", ": "])
                 + "".join(rng.choices(pieces, k=rng.randint(0, 8))) for _line in range(rng.randint(1, 5))]
        path = tmp_path / ("%03d" % number) / ".env"
        path.parent.mkdir()
        path.write_bytes(rng.choice(["\n", "\r\n"]).join(lines).encode())
        files.append(path)
    readings = node_read(str(tmp_path), files, {"A", "B_1", "x.y", "K", "C"})
    for path in files:
        text = path.read_bytes().decode()
        assert readings[str(path)]["dotenv 8.6.0"] == parse_dotenv8(text), repr(text)
        assert readings[str(path)]["dotenv-flow parse"] == parse_dotenv8(text), repr(text)
        assert readings[str(path)]["dotenv 16"] == parse_dotenv16(text), repr(text)
