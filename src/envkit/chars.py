"""Character classes shared by the loader, the checks, the quoting and the diagnostics."""

import re
import unicodedata

# C0 and C1 controls and the Unicode line separators: anything a reader may take as a break.
BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# ASCII controls: what a shell or Dockerfile quoting must escape or refuse.
ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Unicode format characters (category Cf, Unicode 14): invisible, yet they reorder (a
# right-to-left override) or hide (zero-width joiners) what a reader sees in a log or a file.
FORMAT = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f]"
)


def format_char(text: str) -> str:
    """The first format character in ``text`` (as this Python's Unicode data knows them),
    or ''."""
    if text.isascii():
        return ""
    if m := FORMAT.search(text):
        return m.group(0)
    return next((c for c in text if unicodedata.category(c) == "Cf"), "")


def describe(char: str) -> str:
    """U+202E (RIGHT-TO-LEFT OVERRIDE)"""
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')})"


def format_problem(text: str) -> str:
    """An error message for a text with a format character in it, or ''."""
    if char := format_char(text):
        return (f"invisible Unicode format character {describe(char)} is not allowed: it "
                "reorders or hides what a reader of the logs and files sees")
    return ""
