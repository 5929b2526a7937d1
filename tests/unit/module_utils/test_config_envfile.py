""".env files: python-dotenv's reading, byte-exact round trips, edits that touch only their own line."""

from __future__ import annotations

import io

import pytest
from dotenv import dotenv_values

from ansible_collections.treazrisland.ops.plugins.module_utils.config_envfile import (
    NODE_DOTENV, PYTHON_DOTENV, EnvFile, Unrepresentable, quote_value, readers,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

TRICKY = (
    "\ufeff# Treazrisland\n"
    "export NODE_ENV=production\n"
    "\n"
    "  # indented comment\n"
    "PORT = 3001   # inline comment\n"
    "DATABASE_URL=\"postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@db:5432/treaz?schema=public\"\n"
    "JWT_SECRET='single # not a comment'\n"
    "MULTI=\"line one\nline two\"\n"
    "ESCAPED=\"tab\\there \\\"quoted\\\"\"\n"
    "EMPTY=\n"
    "EMPTY_WITH_COMMENT= # nothing here\n"
    "HASH=value#kept\n"
    "'QUOTED_KEY'=1\n"
    "CRLF=yes\r\n"
    "LAST=no-newline"
)


def test_round_trip_is_byte_exact_and_values_match_python_dotenv():
    envfile = EnvFile.parse(TRICKY, "tricky.env")
    assert envfile.render() == TRICKY
    expected = dotenv_values(stream=io.StringIO(TRICKY), interpolate=False)
    assert envfile.values() == expected
    assert envfile.values()["MULTI"] == "line one\nline two"
    assert envfile.values()["EMPTY_WITH_COMMENT"] == ""


def test_set_keeps_quoting_spacing_export_and_comment_and_no_other_byte():
    envfile = EnvFile.parse(TRICKY, "tricky.env")
    envfile.set("PORT", "4000")
    envfile.set("JWT_SECRET", "new secret value")
    envfile.set("NODE_ENV", "staging")
    envfile.set("MULTI", "one\nthree")
    text = envfile.render()
    assert "PORT = 4000   # inline comment\n" in text
    assert "JWT_SECRET='new secret value'\n" in text
    assert "export NODE_ENV=staging\n" in text
    assert 'MULTI="one\\nthree"\n' in text
    unchanged = [line for line in TRICKY.splitlines(True) if not line.startswith(("PORT", "JWT_", "export NODE",
                                                                                  "MULTI", "line two"))]
    for line in unchanged:
        assert line in text
    reread = dotenv_values(stream=io.StringIO(text), interpolate=False)
    assert reread["PORT"] == "4000" and reread["JWT_SECRET"] == "new secret value"
    assert reread["NODE_ENV"] == "staging" and reread["MULTI"] == "one\nthree"
    assert reread["DATABASE_URL"] == dotenv_values(stream=io.StringIO(TRICKY), interpolate=False)["DATABASE_URL"]


def test_empty_value_with_comment_is_set_before_the_comment():
    envfile = EnvFile.parse("A= # note\n", "x.env")
    envfile.set("A", "filled")
    assert envfile.render() == "A= filled # note\n"
    assert dotenv_values(stream=io.StringIO(envfile.render()))["A"] == "filled"


@pytest.mark.parametrize("value", ["", "plain", "with space", "it's", "a\\b", 'say "hi"', "multi\nline",
                                   "$HOME and ${X}", "#hash", "tab\tin", "ünïcödé", "a=b=c"])
def test_new_values_read_back_unchanged(value):
    envfile = EnvFile.parse("FIRST=1", "x.env")
    envfile.append("NEW", value)
    text = envfile.render()
    assert text.startswith("FIRST=1\nNEW=")
    assert dotenv_values(stream=io.StringIO(text), interpolate=False)["NEW"] == value
    if "$" in value:  # single quotes: dotenv-expand (Node) leaves them alone
        assert text == "FIRST=1\nNEW='%s'\n" % value
    assert EnvFile.parse(text, "x.env").values()["NEW"] == value


def test_quote_value_prefers_bare_then_single_quotes():
    assert quote_value("redis://cache:6379/0") == "redis://cache:6379/0"
    assert quote_value("two words") == "'two words'"
    assert quote_value("it's") == '"it\'s"'


def test_append_keeps_the_sample_line_and_comment_verbatim():
    sample = EnvFile.parse("# Section\n\n# Where sessions live\n# (new in 1.5)\nSESSION_STORE=\"redis\"  # or memory\n",
                           "sample")
    assert sample.comment_above("SESSION_STORE") == "# Where sessions live\n# (new in 1.5)\n"
    live = EnvFile.parse("PORT=1\n", "live")
    live.append("SESSION_STORE", "redis", sample.comment_above("SESSION_STORE"),
                text=sample.binding_text("SESSION_STORE"))
    assert live.render() == "PORT=1\n# Where sessions live\n# (new in 1.5)\nSESSION_STORE=\"redis\"  # or memory\n"


def test_comment_separated_by_a_blank_line_is_not_the_key_s():
    sample = EnvFile.parse("# Header\n\nKEY_A=1\n", "sample")
    assert sample.comment_above("KEY_A") == ""


def test_remove_drops_only_the_binding():
    envfile = EnvFile.parse("A=1\n# about B\nB=2\n\nC=3\nB=again\n", "x.env")
    envfile.remove("B")
    assert envfile.render() == "A=1\n# about B\n\nC=3\n"


def test_duplicate_key_last_wins_and_set_edits_the_last():
    envfile = EnvFile.parse("A=1\nA=2\n", "x.env")
    assert envfile.values() == {"A": "2"}
    envfile.set("A", "3")
    assert envfile.render() == "A=1\nA=3\n"


@pytest.mark.parametrize("text, line", [
    ("GOOD=1\nthis is not valid\n", 2),
    ("GOOD=1\n\n\nBAD LINE=x\n", 4),
    ("A='unterminated\n", 1),
    ("A=1\nJUST_A_KEY\n", 2),
])
def test_malformed_line_is_reported_with_file_and_line_never_its_content(text, line):
    with pytest.raises(OpsError) as caught:
        EnvFile.parse(text, "/etc/treazrisland/app.env")
    assert caught.value.msg.startswith("/etc/treazrisland/app.env, line %d: " % line)
    assert "unterminated" not in caught.value.msg and "not valid" not in caught.value.msg


def test_redacted_hides_secret_bindings_and_url_passwords():
    envfile = EnvFile.parse("JWT_SECRET=\"abc\ndef\"\nREDIS_URL=redis://:hunter22@cache:6379\nPORT=1\n", "x")
    shown = envfile.redacted(lambda key: "SECRET" in key, lambda key: "<secret>",
                             lambda text: text.replace("hunter22", "********"))
    assert shown == "JWT_SECRET=<secret>\nREDIS_URL=redis://:********@cache:6379\nPORT=1\n"


def test_node_dotenv_set_writes_lines_every_parser_reads_alike_and_leaves_the_rest():
    envfile = EnvFile.parse(TRICKY, "tricky.env")
    before = {name: read(TRICKY) for name, read in readers(NODE_DOTENV)}
    new = {"PORT": "4000", "JWT_SECRET": "new # secret", "NODE_ENV": "it's", "MULTI": "one\nthree",
           "QUOTED_KEY": "2", "ESCAPED": "C:\\dir"}
    for key, value in new.items():
        envfile.set(key, value, NODE_DOTENV)
    text = envfile.render()
    # dotenv 8 has no inline comment (it moves above) and no export; quoting kept where the value allows.
    assert "\n# inline comment\nPORT = 4000\n" in text
    assert "\nJWT_SECRET='new # secret'\n" in text
    assert text.startswith("\ufeff# Treazrisland\nNODE_ENV=it's\n")
    assert '\nMULTI="one\\nthree"\n' in text
    assert "\nQUOTED_KEY=2\n" in text
    assert '\nESCAPED="C:\\dir"\n' in text
    for name, read in readers(NODE_DOTENV):
        after = read(text)
        for key in new:
            assert after[key] == new[key], (name, key)
        for key in ("DATABASE_URL", "EMPTY", "HASH", "CRLF", "LAST"):
            assert after.get(key) == before[name].get(key), (name, key)


def test_node_dotenv_set_keeps_blank_lines_and_indentation_and_refuses_without_a_change():
    envfile = EnvFile.parse("A=1\n\n  KEY=old   # why\nB=2\n", "x.env")
    envfile.set("KEY", "new", NODE_DOTENV)
    assert envfile.render() == "A=1\n\n  # why\n  KEY=new\nB=2\n"
    with pytest.raises(Unrepresentable):
        envfile.set("B", "a\rb", NODE_DOTENV)
    with pytest.raises(Unrepresentable):
        envfile.append("C", "'both\" quotes'", syntax=NODE_DOTENV)
    assert envfile.render() == "A=1\n\n  # why\n  KEY=new\nB=2\n"
    envfile.append("C", "back\\\\slash", syntax=NODE_DOTENV)
    envfile.append("D", "a\"b'c", syntax=NODE_DOTENV)
    assert envfile.render().endswith("B=2\nC=back\\\\slash\nD=a\"b'c\n")


def test_python_dotenv_syntax_keeps_python_dotenv_escapes():
    envfile = EnvFile.parse("A=1\n", "x.env")
    envfile.append("B", "a\"b'c", syntax=PYTHON_DOTENV)
    envfile.append("C", "back\\slash", syntax=PYTHON_DOTENV)
    assert envfile.render() == "A=1\nB=\"a\\\"b'c\"\nC=\"back\\\\slash\"\n"
    assert [name for name, _read in readers(PYTHON_DOTENV)] == ["python-dotenv"]
