"""The synthetic tweets' texts: each names a topic and takes a stance on it (no Beam, no TF).

Topics and stances are the text half of the labelling rule (`pairs.pair_label`); openers,
fillers, links, newlines, emoji, Arabic and Korean make the texts look like tweets, and
`vocabulary` covers every word they use, as a WordPiece vocab.txt.
"""

from __future__ import annotations

import random
import string

TOPICS = (
    ("harbour bridge", "bridge", "the old bridge"),
    ("city marathon", "marathon", "the race"),
    ("river festival", "festival", "the fair"),
    ("night market", "market", "the bazaar"),
)
STANCES = (
    ("is open today", "is going ahead", "was confirmed", "is on as planned"),
    ("is closed today", "was cancelled", "is not happening", "is off for now"),
)
OPENERS = ("BREAKING:", "Update —", "Just heard", "Can confirm", "Apparently", "Locals say", "")
FILLERS = (
    "more soon",
    "stay safe everyone",
    'officials said "no comment"',
    "photos below",
    "thread 👇",
    "#news",
    "wow 😮",
    "هذا مهم",
    "정말 놀랍다",
    "source: radio",
)


def tweet_text(rng: random.Random, topic: int, stance: int) -> str:
    subject = rng.choice(TOPICS[topic])
    claim = f"{rng.choice(OPENERS)} {subject} {rng.choice(STANCES[stance])}".strip()
    if rng.random() < 0.5:
        claim = claim[0].upper() + claim[1:]
    extras = rng.sample(FILLERS, rng.randint(0, 2))
    if rng.random() < 0.4:
        extras.append("https://t.co/" + "".join(rng.choices(string.ascii_letters + string.digits, k=10)))
    separator = "\n" if rng.random() < 0.3 else " "
    return separator.join([claim + rng.choice(("", ".", "!", "!!"))] + extras)


def vocabulary() -> list[str]:
    """WordPiece vocabulary covering the generator's texts (lower-cased, like BERT uncased)."""
    words: set[str] = set()
    for phrase in [p for topic in TOPICS for p in topic] + [p for s in STANCES for p in s] + list(OPENERS) + list(FILLERS):
        for token in phrase.lower().replace('"', " ").split():
            words.add(token.strip(string.punctuation + "—👇😮") or token)
    words |= {"https", "t", "co", "news", "source"}
    pieces = list(string.ascii_lowercase + string.digits)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(string.punctuation) + ["—", "👇", "😮"]
    vocab += pieces + ["##" + p for p in pieces]
    vocab += sorted(w for w in words if w and w not in vocab)
    return vocab
