#!/usr/bin/env python3
"""Builds AttnCache evaluation workloads from real English text: Debian's fortune files.

    apt-get install fortunes fortunes-min      # /usr/share/games/fortunes/*
    python3 scripts/make_workloads.py OUT_DIR  [--seed 1]
    python3 scripts/make_workloads.py OUT_DIR --from texts.txt --only short --scale 0.2
                                               # any text file, one text per line (the demo)

For each workload OUT_DIR/<name>/ gets
    corpus.txt   the database inputs, one per line
    heldout.txt  a plain held-out split: texts that are not in the corpus
    stream.txt   a query stream with realistic repetition (see below)
    info.json    sources, sizes and the stream's composition

Workloads (token lengths are the model's, set by the eval's --max-length):
    short       single fortunes of 12-30 words: natural lengths, about 20-45 tokens
    passage128  passages of consecutive fortunes from one file, >= 130 words: 128 tokens after
                truncation
    passage512  the same, >= 520 words: 512 tokens after truncation

The stream mixes, per query: 25% exact repeats of a corpus text, 50% near-duplicates of a
corpus text (1-3 edits: a word substituted by another word of the corpus, two adjacent words
swapped, end punctuation changed), 25% fresh held-out texts. Which corpus text is repeated or
varied follows a Zipf(1.1) popularity, as in search logs. The mix is our choice; the hit rate
scales with it, which is why the plain held-out split is reported beside it.
"""
import argparse
import json
import pathlib
import random

ROOT = pathlib.Path("/usr/share/games/fortunes")
SKIP = {"ascii-art", "art", "songs-poems", "limerick"}  # drawings and verse layouts


def lines_of(path):
    """(file, line) for every line of a text file that is plain printable ASCII."""
    text = pathlib.Path(path).read_text(encoding="utf-8", errors="replace")
    return [(path, " ".join(line.split())) for line in text.splitlines()
            if line.strip() and line.isascii() and line.isprintable()]


def english_fortunes():
    """(file, fortune text on one line) for every English fortune, in file order."""
    if not ROOT.is_dir():
        raise SystemExit(f"no fortunes under {ROOT}: apt-get install fortunes fortunes-min")
    out = []
    for path in sorted(ROOT.iterdir()):
        if (not path.is_file() or path.is_symlink() or path.suffix in (".dat", ".u8")
                or path.name in SKIP):
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        for item in text.split("\n%\n"):
            line = " ".join(part.strip() for part in item.strip().split("\n"))
            line = " ".join(line.split())
            if line and line.isascii() and line.isprintable():
                out.append((path.name, line))
    if not out:
        raise SystemExit(f"no fortunes under {ROOT}: apt-get install fortunes fortunes-min")
    return out


def passages(fortunes, min_words):
    """Consecutive fortunes of one file joined until each passage has min_words words."""
    out, current, words, source = [], [], 0, None
    for name, line in fortunes:
        if name != source:
            current, words, source = [], 0, name
        current.append(line)
        words += len(line.split())
        if words >= min_words:
            out.append(" ".join(current))
            current, words = [], 0
    return out


def zipf_index(rng, n, s=1.1):
    weights = getattr(zipf_index, "cache", {}).get((n, s))
    if weights is None:
        weights = [1.0 / (k + 1) ** s for k in range(n)]
        zipf_index.cache = {(n, s): weights}
    return rng.choices(range(n), weights=weights)[0]


def variant(rng, text, pool):
    words = text.split()
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        alpha = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 3]
        if op < 0.6 and alpha:
            words[rng.choice(alpha)] = rng.choice(pool)
        elif op < 0.85 and len(words) >= 3:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        else:
            last = words[-1].rstrip(".!?")
            words[-1] = last + rng.choice([".", "!", "?", "..."])
    return " ".join(words)


def make(name, texts, n_corpus, n_heldout, n_stream, rng, out_dir, source_note):
    rng.shuffle(texts)
    if len(texts) < n_corpus + n_heldout + n_stream // 4:
        raise SystemExit(f"{name}: only {len(texts)} texts")
    corpus = texts[:n_corpus]
    heldout = texts[n_corpus:n_corpus + n_heldout]
    fresh = iter(texts[n_corpus + n_heldout:])
    pool = sorted({w for t in corpus for w in t.split() if w.isalpha() and len(w) >= 3})
    popular = corpus[:]  # popularity rank = position in this shuffled copy
    rng.shuffle(popular)
    stream, kinds = [], {"repeat": 0, "near_duplicate": 0, "fresh": 0}
    for _ in range(n_stream):
        r = rng.random()
        if r < 0.25:
            stream.append(popular[zipf_index(rng, len(popular))])
            kinds["repeat"] += 1
        elif r < 0.75:
            stream.append(variant(rng, popular[zipf_index(rng, len(popular))], pool))
            kinds["near_duplicate"] += 1
        else:
            stream.append(next(fresh))
            kinds["fresh"] += 1
    d = out_dir / name
    d.mkdir(parents=True, exist_ok=True)
    for fname, lines in (("corpus.txt", corpus), ("heldout.txt", heldout), ("stream.txt", stream)):
        (d / fname).write_text("\n".join(lines) + "\n")
    (d / "info.json").write_text(json.dumps({
        "source": source_note, "corpus": len(corpus), "heldout": len(heldout),
        "stream": len(stream), "stream_kinds": kinds}, indent=2) + "\n")
    print(f"{name}: corpus {len(corpus)}, held-out {len(heldout)}, stream {len(stream)} {kinds}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=pathlib.Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--from", dest="source", help="a text file to use instead of the fortunes")
    ap.add_argument("--only", default="short,passage128,passage512")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every size")
    args = ap.parse_args()
    if args.source:
        fortunes = lines_of(args.source)
        note = f"{args.source}, {len(fortunes)} ASCII lines"
    else:
        fortunes = english_fortunes()
        note = f"Debian fortunes ({ROOT}), English files, {len(fortunes)} fortunes"
    only = set(args.only.split(","))

    def n(x):
        return max(1, int(x * args.scale))

    if "short" in only:
        short = [t for _, t in fortunes if 12 <= len(t.split()) <= 30]
        make("short", short, n(3000), n(500), n(500), random.Random(args.seed), args.out_dir, note)
    if "passage128" in only:
        make("passage128", passages(fortunes, 130), n(600), n(200), n(300),
             random.Random(args.seed + 1), args.out_dir,
             note + ", consecutive texts joined to >= 130 words")
    if "passage512" in only:
        make("passage512", passages(fortunes, 520), n(100), n(100), n(200),
             random.Random(args.seed + 2), args.out_dir,
             note + ", consecutive texts joined to >= 520 words")


if __name__ == "__main__":
    main()
