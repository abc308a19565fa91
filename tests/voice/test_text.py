import random

import pytest

from models.speech.text import SentenceStream, speakable, split_sentences


@pytest.mark.parametrize("text,expected", [
    ("Dr. Smith arrived. He sat down.", ["Dr. Smith arrived.", "He sat down."]),
    ("It costs 3.50 dollars. Pi is 3.14159!", ["It costs 3.50 dollars.", "Pi is 3.14159!"]),
    ("Use e.g. a hammer, i.e. a tool. Done?", ["Use e.g. a hammer, i.e. a tool.", "Done?"]),
    ("J. R. R. Tolkien wrote it. Really.", ["J. R. R. Tolkien wrote it.", "Really."]),
    ("Wait... what? No way!", ["Wait... what?", "No way!"]),
    ("Well... maybe. Sure.", ["Well... maybe.", "Sure."]),
    ("Open file.txt now. Then v1.2 runs.", ["Open file.txt now.", "Then v1.2 runs."]),
    ("He said \"Stop.\" Then left.", ["He said \"Stop.\"", "Then left."]),
    ("Steps:\n1. Mix it.\n2. Bake it.", ["Steps:", "1. Mix it.", "2. Bake it."]),
    ("no final stop", ["no final stop"]),
    ("", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_speakable_strips_markdown_code_and_urls():
    md = (
        "# Result\n"
        "Here is **bold**, _italic_ and `x = 1`. See [the docs](https://docs.python.org/3/) "
        "or https://www.example.com/some/page?q=1.\n"
        "```python\nfor i in range(10):\n    print(i)\n```\n"
        "- first item\n- second item\n"
        "| name | value |\n|------|-------|\n| a | 1 |\n"
    )
    out = speakable(md)
    assert "```" not in out and "print(i)" not in out and "range" not in out
    assert "(code omitted)" in out
    assert "http" not in out and "docs.python.org/3" not in out
    assert "a link to example.com." in out
    assert "the docs" in out
    for sym in "*_#`|[]":
        assert sym not in out, sym
    assert "first item." in out and "second item." in out
    assert "name, value" in out and "a, 1" in out
    sentences = split_sentences(out)
    assert sentences[0] == "Result."
    assert "first item." in sentences and "second item." in sentences


def test_speakable_keeps_plain_text():
    assert speakable("Paris is the capital of France.") == "Paris is the capital of France."
    assert speakable("2 + 2 = 4 & 50% done") == "2 + 2 = 4 and 50 percent done"


@pytest.mark.parametrize("md,expected", [
    # code: a fenced block is announced, never read; inline code keeps its words
    ("Run `make test` first.\n~~~\nrm -rf build\n~~~\nThen wait.", "Run make test first.\n(code omitted).\nThen wait."),
    ("Before.\n\n    indented = code\n\nAfter.", "Before.\nAfter."),
    # links and pictures: the label; without one, the host
    ("Read [the guide](https://x.org/guide) or <https://www.y.com/a/b>.", "Read the guide or a link to y.com."),
    ("![a red cube](cube.png) and [](http://bar.org/q)", "a red cube and a link to bar.org"),
    # lists: each item its own sentence, nested ones too; markers of every kind go
    ("Steps:\n1. Mix it\n2) Bake it\n- plain\n  * nested item\n+ plus", "Steps:\nMix it.\nBake it.\nplain.\nnested item.\nplus."),
    # emphasis of every kind, inside words too
    ("***Very*** __strong__, _light_ and ~~gone~~ snake_case.", "Very strong, light and gone snake case."),
    # headings (ATX and underlined) end in a full stop; a rule says nothing
    ("## Results!\nGood.\n\nSummary\n=======\n\n---\n\n***\nEnd.", "Results!\nGood.\nSummary.\nEnd."),
    # quotes, HTML, entities and escapes
    ("> Be brief.\n\n<div>kept <b>text</b></div>\n\nTom &amp; Jerry \\*not emphasis\\*", "Be brief.\nkept text\nTom and Jerry not emphasis"),
    # a table straight under a line of text is still read as a table
    ("Prices:\n| item | cost |\n|---|--:|\n| tea | 2 |", "Prices:\nitem, cost\ntea, 2"),
])
def test_speakable_markdown_constructs(md, expected):
    assert speakable(md) == expected


def test_stream_holds_a_table_until_it_ends():
    reply = "Here:\n| a | b |\n|---|---|\n| 1 | 2 |\nDone."
    s = SentenceStream()
    out = []
    for ch in reply:
        out += s.feed(ch)
    assert out + s.flush() == split_sentences(speakable(reply)) == ["Here:", "a, b", "1, 2", "Done."]


REPLY = """Sure! Here is how to do it.

1. Install it with `pip install x`.
2. Run **x** on your file, e.g. data.csv.

```bash
x --fast data.csv
```

It takes about 2.5 seconds. Dr. Who approves. See https://example.org/docs. The end"""


@pytest.mark.parametrize("seed", range(6))
def test_stream_splitter_matches_whole_text(seed):
    rng = random.Random(seed)
    stream, out, i = SentenceStream(), [], 0
    while i < len(REPLY):
        n = rng.randint(1, 9)
        out += stream.feed(REPLY[i:i + n])
        i += n
    out += stream.flush()
    assert out == split_sentences(speakable(REPLY))
    assert "(code omitted)." in out
    assert not any("--fast" in s for s in out)


def test_stream_releases_sentences_early_and_holds_code():
    s = SentenceStream()
    assert s.feed("Hello there. How ar") == ["Hello there."]
    assert s.feed("e you") == []
    assert s.feed("? Fine") == ["How are you?"]
    assert s.feed(".\n```py\nprint(1). x = 2.\n") == ["Fine."]  # code not released while open
    assert s.feed("```\nAfter code.") == ["(code omitted)."]
    assert s.flush() == ["After code."]


def test_stream_decimal_across_chunks_and_long_sentence_cut():
    s = SentenceStream()
    assert s.feed("It is 3.") == []
    assert s.feed("14 exactly. Next") == ["It is 3.14 exactly."]
    long = SentenceStream(max_chars=50)
    parts = long.feed("word, " * 30 + "end. ") + long.flush()
    assert all(len(p) <= 50 for p in parts) and len(parts) > 3


def _stream_words(text: str, **options) -> list[str]:
    s = SentenceStream(**options)
    out: list[str] = []
    for word in text.split(" "):
        out += s.feed(word + " ")
    return out + s.flush()


def test_the_first_clause_is_released_early_and_only_the_first():
    pieces = _stream_words("Sure, here is one: why did the chicken cross the road? To get there, of course.")
    assert pieces == ["Sure, here is one:", "why did the chicken cross the road?", "To get there, of course."]
    assert _stream_words("Yes, 3,000 people came, and left.") == ["Yes, 3,000 people came,", "and left."]
    assert _stream_words("The capital of France is Paris.") == ["The capital of France is Paris."]
    assert _stream_words("Sure, here is one: a joke.", first_clause=False) == ["Sure, here is one: a joke."]
