# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``.env`` files read with python-dotenv's parser and edited line by line.

python-dotenv's parser yields one binding per statement together with its exact
original text, so a file is kept as that list of texts: joining them gives the
file back byte for byte, and an edit replaces, removes or appends single
bindings while every untouched line (comments, blank lines, quoting, ``export``
prefixes) stays as it was.

Values are the raw values the file holds: ``${VAR}`` references are compared
and kept as written, never expanded.

A value is written for the parser of the application that reads the file (the
syntax): ``python_dotenv`` uses python-dotenv's escapes; ``node_dotenv`` only
forms that Node's dotenv 8 and 16 and python-dotenv all read as the same string,
since Node's dotenv keeps python-dotenv's escapes as literal backslashes.
"""

from __future__ import annotations

import re
import traceback

from ansible_collections.treazrisland.ops.plugins.module_utils.config_node_dotenv import (
    JS_WHITESPACE, parse_dotenv8, parse_dotenv16,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

try:
    from io import StringIO

    from dotenv.parser import parse_stream
except ImportError:
    parse_stream = None
    DOTENV_IMPORT_ERROR = traceback.format_exc()
else:
    DOTENV_IMPORT_ERROR = None

_NEWLINE = re.compile(r"\r\n|\n|\r")
# The head of a binding as python-dotenv reads it: leading whitespace, optional
# ``export``, the key (bare or single-quoted), ``=`` with the blanks around it.
_HEAD = re.compile(r"(?P<lead>\s*)(?P<export>export[^\S\r\n]+)?(?P<key>'[^']+'|[^=#\s]+)(?P<eq>[^\S\r\n]*=[^\S\r\n]*)")
_SINGLE_QUOTED = re.compile(r"'(?:\\.|[^'\\])*'", re.DOTALL)
_DOUBLE_QUOTED = re.compile(r'"(?:\\.|[^"\\])*"', re.DOTALL)
_UNQUOTED = re.compile(r"[^\r\n]*")
_INLINE_COMMENT = re.compile(r"\s+#")
# Values written without quotes: nothing that a reader could take for a quote,
# a comment, an escape, an interpolation or the end of the value.
_BARE_SAFE = re.compile(r"[A-Za-z0-9_./:@,+=%~^*?!\[\]{}-]+")
_DOUBLE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}

# The parser the application reads the file with (config_apply's env_syntax).
NODE_DOTENV = "node_dotenv"
PYTHON_DOTENV = "python_dotenv"
ENV_SYNTAXES = (NODE_DOTENV, PYTHON_DOTENV)
# Never readable by Node's dotenv 8: it splits lines at a CR, and its "." stops at U+2028/U+2029.
_NODE_NEVER = ("\r", "\u2028", "\u2029")
_QUOTE_CHARS = "'\"`"
# A backslash in a double-quoted value that python-dotenv (\\ \' \" \a \b \f \n \r \t \v) or Node's dotenv
# (\n, \r) would unescape, one before a newline (written as \n), or one at the end.
_UNESCAPED_BY_SOME = re.compile(r"\\(?:[\\'\"abfnrtv\n]|\Z)")


def require_dotenv():
    if parse_stream is None:
        raise OpsError("the Python library python-dotenv is required on the managed host: pip install python-dotenv",
                       exception=DOTENV_IMPORT_ERROR)


class Entry:
    """One statement of the file: a binding (key set), a comment or blank run (key None)."""

    __slots__ = ("key", "value", "text", "line")

    def __init__(self, key, value, text, line):
        self.key = key
        self.value = value
        self.text = text
        self.line = line


class EnvFile:
    """A parsed ``.env`` file that renders back to its exact text."""

    def __init__(self, entries, name="<env>", bom=""):
        self.entries = entries
        self.name = name
        self.bom = bom  # python-dotenv skips a byte order mark; it is written back as found

    @classmethod
    def parse(cls, text, name="<env>"):
        """Parse text; a statement python-dotenv cannot read, or a key without ``=``, is an error.

        The message names the file and line, never the line's content (it may hold a secret).
        """
        require_dotenv()
        entries = []
        for binding in parse_stream(StringIO(text)):
            original = binding.original
            line = original.line + _leading_newlines(original.string)
            if binding.error:
                raise OpsError("%s, line %d: not a KEY=value line python-dotenv can read" % (name, line))
            if binding.key is not None and binding.value is None:
                raise OpsError("%s, line %d: %s has no '=' and no value" % (name, line, binding.key))
            entries.append(Entry(binding.key, binding.value, original.string, line))
        parsed = cls(entries, name, bom="\ufeff" if text.startswith("\ufeff") else "")
        if parsed.render() != text:
            # Cannot happen with python-dotenv's parser; guards the byte-exact promise.
            raise OpsError("%s: python-dotenv did not read the whole file back; refusing to edit it" % name)
        return parsed

    def render(self):
        return self.bom + "".join(entry.text for entry in self.entries)

    def keys(self):
        """Keys in file order, each once (where it is first set)."""
        return list(self.values())

    def values(self):
        """{key: raw value} in order of first appearance; a key set twice keeps its last value, as in python-dotenv."""
        found = {}
        for entry in self.entries:
            if entry.key is not None:
                found[entry.key] = entry.value
        return found

    def comment_above(self, key):
        """The comment lines directly above the first binding of key (no blank line between), as text."""
        for index, entry in enumerate(self.entries):
            if entry.key != key:
                continue
            if _after_blank_line(entry.text):
                return ""
            lines = []
            for previous in reversed(self.entries[:index]):
                if previous.key is not None or not previous.text.strip().startswith("#"):
                    break
                lines.insert(0, previous.text.lstrip())
                if _after_blank_line(previous.text):
                    break
            return "".join(lines)
        return ""

    def set(self, key, value, syntax=PYTHON_DOTENV):
        """Give key a new value in place (its last binding), keeping its quoting style where the value allows.

        For node_dotenv the binding loses ``export`` and its inline comment goes to the line above
        (see _node_binding). Unrepresentable when syntax cannot hold the value; nothing changes then.
        """
        for index in range(len(self.entries) - 1, -1, -1):
            entry = self.entries[index]
            if entry.key != key:
                continue
            if syntax == NODE_DOTENV:
                comment, entry.text = _node_binding(entry.text, key, value)
                if comment:
                    self.entries.insert(index, Entry(None, None, comment, entry.line))
            else:
                entry.text = _replace_value(entry.text, value)
            entry.value = value
            return
        raise KeyError(key)

    def append(self, key, value, comment="", text=None, syntax=PYTHON_DOTENV):
        """Add a binding at the end, after an optional comment; ``text`` is a ready-made line to use as is.

        Unrepresentable when syntax cannot hold the value; nothing changes then.
        """
        line = text if text is not None else "%s=%s" % (key, quote_value(value, syntax))
        if self.entries and not self.entries[-1].text.endswith(("\n", "\r")):
            self.entries[-1].text += "\n"
        line = line.strip("\r\n") + "\n"
        if comment:
            self.entries.append(Entry(None, None, comment if comment.endswith("\n") else comment + "\n", 0))
        self.entries.append(Entry(key, value, line, 0))

    def remove(self, key):
        """Remove every binding of key; whitespace in front of it stays, so nothing else moves."""
        kept = []
        for entry in self.entries:
            if entry.key == key:
                lead = _HEAD.match(entry.text).group("lead")
                if lead:
                    kept.append(Entry(None, None, lead, entry.line))
            else:
                kept.append(entry)
        self.entries = kept

    def binding_text(self, key):
        """The original text of the last binding of key, without surrounding blank lines."""
        for entry in reversed(self.entries):
            if entry.key == key:
                return entry.text.strip("\r\n")
        raise KeyError(key)

    def redacted(self, is_secret, marker, mask_text):
        """The file's text with each secret binding replaced by ``KEY=<marker(key)>``.

        Other lines pass through ``mask_text`` (which hides credentials inside URLs).
        """
        out = []
        for entry in self.entries:
            if entry.key is not None and is_secret(entry.key):
                head = _HEAD.match(entry.text)
                newline = "\n" if entry.text.endswith(("\n", "\r")) else ""
                out.append("%s%s%s=%s%s" % (
                    head.group("lead"), head.group("export") or "", entry.key, marker(entry.key), newline))
            else:
                out.append(mask_text(entry.text))
        return "".join(out)


def readers(syntax):
    """[(name, parse)] of the parsers that must all read a file written for syntax as intended.

    ``parse`` takes the file's text and returns {key: value}, a key set twice with its last value.
    """
    python = ("python-dotenv", lambda text: EnvFile.parse(text).values())
    if syntax == NODE_DOTENV:
        return [python, ("Node's dotenv 16", parse_dotenv16), ("Node's dotenv 8 (dotenv-flow 3)", parse_dotenv8)]
    return [python]


def _after_blank_line(text):
    """Whether a statement's text starts with a line break (python-dotenv puts blank lines in front of it)."""
    return bool(_NEWLINE.search(re.match(r"\s*", text).group(0)))


def _leading_newlines(text):
    """Newlines in the whitespace in front of a statement (python-dotenv counts lines from its start)."""
    lead = re.match(r"\s*", text).group(0)
    return len(_NEWLINE.findall(lead))


class Unrepresentable(ValueError):
    """No form of the value reads back exactly under the target parser (the value is never in the message)."""


def quote_value(value, syntax=PYTHON_DOTENV):
    """How a new value is written for syntax; Unrepresentable when the syntax cannot hold it."""
    if syntax == NODE_DOTENV:
        return node_form(value)
    if value == "":
        return ""
    if _BARE_SAFE.fullmatch(value):
        return value
    if not any(char in value for char in "'\\\n\r"):
        return "'%s'" % value
    return _python_double_quoted(value)


def node_form(value, style=""):
    """The value written so that Node's dotenv 8 and 16 and python-dotenv all read exactly value.

    ``style`` (a quote char) is tried first when allowed, to keep an existing line's quoting; then
    bare, single quotes, double quotes, in that order. Raises Unrepresentable when none fits.
    """
    if any(char in value for char in _NODE_NEVER):
        raise Unrepresentable()
    forms = {"": _node_bare, "'": _node_single_quoted, '"': _node_double_quoted}
    for name in dict.fromkeys((style, "", "'", '"')):
        written = forms[name](value)
        if written is not None:
            return written
    raise Unrepresentable()


def _blank(char):
    """Whitespace to any of the three parsers: each trims an unquoted value with its own idea of it."""
    return char.isspace() or char in JS_WHITESPACE


def _node_bare(value):
    # Unquoted: all three trim it, dotenv 16 and python-dotenv end it at a #, a leading quote
    # makes it a quoted value, and python-dotenv's dotenv_values() expands ${...}.
    if value == "":
        return ""
    if value[0] in _QUOTE_CHARS or _blank(value[0]) or _blank(value[-1]):
        return None
    if any(char in value for char in "#\n") or "${" in value:
        return None
    return value


def _node_single_quoted(value):
    # Nothing is unescaped by Node inside single quotes; python-dotenv unescapes \\ and \', and a
    # trailing backslash would escape the closing quote for python-dotenv and dotenv 16.
    if any(char in value for char in "'\n") or "\\\\" in value or value.endswith("\\"):
        return None
    return "'%s'" % value


def _node_double_quoted(value):
    # Inside double quotes the only escape all three read alike is \n (a newline is written so). A
    # backslash stands for itself everywhere only before a character none of them unescapes, and
    # not at the end (it would escape the closing quote); ${...} is left to single quotes.
    if '"' in value or _UNESCAPED_BY_SOME.search(value) or "${" in value:
        return None
    return '"%s"' % value.replace("\n", "\\n")


def _python_double_quoted(value):
    return '"%s"' % "".join(_DOUBLE_ESCAPES.get(char, char) for char in value)


def _replace_value(text, value):
    """The binding text with its value token replaced; export, key, spacing and comment kept (python_dotenv)."""
    head = _HEAD.match(text)
    rest = text[head.end():]
    token_end, style = _value_token(rest, head.group("eq"))
    if token_end == 0 and rest.startswith("#"):
        rest = " " + rest  # KEY= # comment: once a value stands there, the comment needs a blank before it
    if style == "'" and not any(char in value for char in "'\\\n\r"):
        new = "'%s'" % value
    elif style == '"':
        new = _python_double_quoted(value)
    else:
        new = quote_value(value)
    return text[:head.end()] + new + rest[token_end:]


def _node_binding(text, key, value):
    """(comment, binding) replacing a binding's text so that Node's dotenv 8 reads the new value.

    The quoting style is kept where the value allows. dotenv 8 reads everything after ``=`` as the
    value and skips ``export`` lines, so an inline comment moves to a line of its own above the
    binding (returned as comment, "" when none), ``export`` and quotes around the key go.
    """
    head = _HEAD.match(text)
    rest = text[head.end():]
    token_end, style = _value_token(rest, head.group("eq"))
    trailer = rest[token_end:]
    newline = _NEWLINE.search(trailer)
    newline = newline.group(0) if newline else ""
    comment = trailer.strip()
    lead = head.group("lead")
    breaks = list(_NEWLINE.finditer(lead))
    cut = breaks[-1].end() if breaks else 0
    before_line, indent = lead[:cut], lead[cut:]  # blank lines above it, and the binding's own indentation
    binding = "%s%s%s%s%s" % (indent, key, head.group("eq"), node_form(value, style), newline)
    if comment:
        return before_line + indent + comment + (newline or "\n"), binding
    return "", before_line + binding


def _value_token(rest, equals):
    """Length and quote style of the value at the start of rest, the way python-dotenv delimits it."""
    if rest.startswith("'"):
        return _SINGLE_QUOTED.match(rest).end(), "'"
    if rest.startswith('"'):
        return _DOUBLE_QUOTED.match(rest).end(), '"'
    if rest.startswith("#") and equals.endswith((" ", "\t")):
        return 0, ""  # KEY= # comment: the value is empty
    raw = _UNQUOTED.match(rest).group(0)
    comment = _INLINE_COMMENT.search(raw)
    if comment:
        raw = raw[:comment.start()]
    return len(raw.rstrip()), ""
