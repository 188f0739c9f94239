"""The one rule for text a client asks to be spoken: cleaned once, before anything counts it or stores it.

Every door (the voice API, the OpenAI-compatible endpoint, the Studio, each line of a batch) reaches
synthesis through `jobs.enqueue_synthesis` (and a batch's lines through `batches.parse_batch` first), which
apply this before admission, the quota and the cache address, so identical-looking texts get one address and
what an engine, a database or a caption file is handed is always plain text. The rule, in order:

1. **Line breaks become `\\n`.** Every break `str.splitlines` knows (CRLF, CR, vertical tab, form feed, the
   file/group/record separators, NEL, U+2028/U+2029) is one newline, so a sentence break stays a break.
2. **Other control characters are removed**: the rest of C0 (NUL included) but tab, DEL, C1, and lone
   surrogates (which JSON can carry but no encoder, engine or database accepts). They have no sound, and a
   client pasting from a PDF or a terminal should not be refused for them.
3. **Unicode is normalised to NFC**, so "é" typed as one character or as e + a combining accent is the same
   request (one cache address, one count of characters).
4. **Something must be left to speak**: at least one letter, digit or symbol (Unicode categories L, N, S).
   A text of only whitespace, punctuation, combining marks or invisible characters (zero-width spaces,
   joiners, byte-order marks) is refused with `UnspeakableText` (the API's 422 `empty_text`), saying what
   the text held instead; an engine would otherwise produce no audio and the job would fail later.
"""

from __future__ import annotations

import re
import unicodedata

#: Line breaks other than `\n` (step 1): those `str.splitlines` knows, CRLF first so it stays one break.
_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
#: Control characters (and lone surrogates) removed by step 2; tab and newline are kept.
_REMOVED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
#: The first letter of the Unicode categories that have something to say: letters, numbers, symbols.
_SPEAKABLE = ("L", "N", "S")
#: What a text with nothing speakable held, by Unicode category, in the words of the refusal.
_KINDS = {"Z": "whitespace", "P": "punctuation", "M": "combining marks", "C": "invisible characters"}


class UnspeakableText(ValueError):
    """The text, once cleaned, has nothing an engine could say; the message says what it held instead."""

    code = "empty_text"


def normalised_text(text: str) -> str:
    """Steps 1–3 of the rule: line breaks unified, other control characters removed, NFC."""
    return unicodedata.normalize("NFC", _REMOVED.sub("", _BREAKS.sub("\n", text)))


def speakable_text(text: str) -> str:
    """The whole rule: `text` cleaned, or `UnspeakableText` when nothing in it can be spoken."""
    cleaned = normalised_text(text)
    if any(unicodedata.category(char)[0] in _SPEAKABLE for char in cleaned):
        return cleaned
    if not cleaned.strip():
        held = "nothing" if not text else "only control characters" if not cleaned else "only whitespace"
        raise UnspeakableText(f"text has nothing to speak: it holds {held}; give 1–4096 characters to speak")
    kinds = sorted({_KINDS.get(unicodedata.category(char)[0], "other") for char in cleaned if not char.isspace()})
    invisible = next((char for char in cleaned if unicodedata.category(char)[0] == "C"), None)
    example = f" such as U+{ord(invisible):04X} {unicodedata.name(invisible, 'unnamed')}" if invisible else ""
    raise UnspeakableText(f"text has nothing to speak: it holds only {' and '.join(kinds)}{example}, no letter, "
                          "digit or symbol an engine could say")
