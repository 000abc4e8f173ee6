#!/usr/bin/env python3
"""Build the bundled `fortunes` text data set (datasets/fortunes/) from the
Debian packages `fortunes` and `fortunes-min` (the classic BSD fortune-mod
databases), version 1:1.99.1-7.3 (Debian 12 "bookworm").

Standard library only. Usage (from the repository root):

    # let the script fetch the pinned .debs with apt-get itself
    python3 tools/datasets/make_fortunes.py

    # or use .debs you downloaded already (parsed in Python: ar + tar.xz):
    #   cd /tmp/f && apt-get download fortunes=1:1.99.1-7.3 fortunes-min=1:1.99.1-7.3
    python3 tools/datasets/make_fortunes.py \\
        --deb /tmp/f/fortunes_1%3a1.99.1-7.3_all.deb \\
        --deb /tmp/f/fortunes-min_1%3a1.99.1-7.3_all.deb

    # or trees extracted with `dpkg-deb -x PKG.deb DIR` (one --tree per package)
    python3 tools/datasets/make_fortunes.py --tree /tmp/f/fortunes --tree /tmp/f/fortunes-min

Input: every regular file in usr/share/games/fortunes/ of the two packages
except the strfile indexes (*.dat) and the *.u8 symlinks: 43 category files.
The sha256 of each is pinned below (so all three input modes are checked),
and so are the sha256 of the two .debs (checked when .debs are used).
Nothing under an `off/` directory (the offensive collection, which Debian
no longer ships since 1:1.99.1-7.2) is ever read. `ascii-art` is left out
(10 drawings that whitespace normalisation turns into noise).

Cleaning (per entry; entries are separated by lines that are exactly `%`):
  1. decode the file as UTF-8 (strict);
  2. repair mojibake: while an entry has non-ASCII characters and
     `.encode("latin-1").decode("utf-8")` succeeds on the whole entry,
     apply it (UTF-8 that was mis-read as Latin-1 and re-encoded; real
     Latin-1 text such as "etat" with an e-acute fails the UTF-8 decode and
     is left alone). Repairs 4 entries (one of them was
     encoded three times);
  3. resolve overstriking: repeatedly delete "<char><BACKSPACE>" pairs, so
     "_\\bX" (underline) and "`\\be" (accent) keep the final letter;
  4. delete any remaining control character other than tab/newline (BEL);
  5. collapse every run of whitespace to one space and strip the ends;
  6. keep entries with MIN_CHARS <= len(text) <= MAX_CHARS characters;
  7. de-duplicate on a key = text.casefold() with every non-alphanumeric
     character removed (so exact duplicates and copies differing only in
     case, punctuation or spacing count as one), keeping the first
     occurrence, categories visited in sorted name order, file order inside.

Labelled split (LABEL_CATEGORIES only): an entry is labelled with category c
if c is the only one of LABEL_CATEGORIES whose file contains its key (keys
shared by two labelled categories are ambiguous and left unlabelled; a
copy in a non-labelled category does not matter). Then, with one
rng = random.Random(SEED) used in this order:
  * for c in sorted(LABEL_CATEGORIES): items of c in file order,
    rng.shuffle(items), first len*4//5 to train, the rest to test;
  * rng.shuffle(train); rng.shuffle(test);
  * corpus = every unique entry (first-occurrence text) whose key is not a
    test key, in first-occurrence order; rng.shuffle(corpus).
So no test text, nor any variant of it with the same key, is in the
corpus; train texts are.

Output (UTF-8, "\\n" line ends, final newline):
  corpus.txt    one entry per line (all categories except ascii-art)
  train.jsonl   {"text": ..., "label": ...} per line (json, ensure_ascii=False)
  test.jsonl
  COPYRIGHT     verbatim copy of usr/share/doc/fortunes/copyright
"""

import argparse
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile

DEBIAN_VERSION = "1:1.99.1-7.3"
# package -> (file name apt-get download gives, sha256 of the .deb)
DEBS = {
    "fortunes": ("fortunes_1%3a1.99.1-7.3_all.deb",
                 "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5"),
    "fortunes-min": ("fortunes-min_1%3a1.99.1-7.3_all.deb",
                     "9eed5b45064e41133dae0967cf3a17588ad77c014fcc7bf1527fa3ea48e44d07"),
}
DATA_DIR = "usr/share/games/fortunes/"
COPYRIGHT_PATH = "usr/share/doc/fortunes/copyright"
COPYRIGHT_SHA256 = "92d4ee89ff8ac72255bdcab1f4ea5bbfa31e5d3c85b56d275e48c96a4b4e8bd9"

# sha256 of every category file in the two packages (fortunes-min ships
# fortunes, literature and riddles; fortunes ships the other 40).
FILE_SHA256 = {
    "art": "600b8197bc994fd4fcbb623aa5e700629540af44f044d4907886bd1031f160ce",
    "ascii-art": "818d0967629e0cd48b69c4b7e93645a7f80bba99ed4f1cd668f42b3d174b7431",
    "computers": "a86be224d9f733b88eeaf8a46ea0427e05cc69c69edcf5f6db47ddf561ca37fd",
    "cookie": "5dc97eee96dcc5287c373be629482730d45f77b59da1287933c9c5f482a055eb",
    "debian": "491dd04bf909b64152bcb554b9bc88df0ca50c0dc676d74d10742bf38aaa50de",
    "definitions": "57be4744c353d931fa2ca95f50215d4b67539f5a527ae628a6441fb4a1258caa",
    "disclaimer": "c085d66ea68686d5e28852cef77c3eeb3640895c5647b148deeaaada2c07fa7b",
    "drugs": "a5a59ee8b0e1fd3085a38dfa29149fe9a2c8d7f256b74aea71aa2cc08a9990c1",
    "education": "ba13321d6d6beb7a6e65296a47450bfc87b24a319fff2e94762011b59a31aa35",
    "ethnic": "61695cb9b60dbee91755027da1fa4f850f4c6386ff38197a48e4ff1696385e19",
    "food": "78077a65b9288df71e7b2a8e8258cd3b1005d1282f7c7e57ad53927f374df45d",
    "fortunes": "8819e6b83bacd6b7e8a4a2483f41e126b3b4b3ef8cd2aca907a53b163f082fd5",
    "goedel": "9d447862c803f22cdf7bb26cb70cca1a7f8a2a7992f2793ddcb43cfcf3302ab0",
    "humorists": "ffdf67e1f4049133bf904b769c364de45e5ae0abfb3ea7c9afb54b87b89acfc4",
    "kids": "82e51834990afd36f2ea2f25864b368e2f44f9c761aba034035b26061de6d5be",
    "knghtbrd": "c25e8373b38a6f159a7b1d336f363d5c962224a6ddcc86279dec47aad3c869b3",
    "law": "f04141f94e788b7899e0adb0490d182ce711f8fdbb8252343a5257e717e9279d",
    "linux": "85b0e5eadf7adeea77da4e1fbd456c962ce3bd1dabbd053098ecf37de9169cf3",
    "linuxcookie": "4f75959924ae5bb1955c30a5c985e641ec17cd5ebb7453d839f94b1988331202",
    "literature": "22eab7d53ce994d0466901bb0d799ae3289603e17dc0bdb7f16666931155c5a5",
    "love": "4d4fb7c540e5500e44643524dae41dd7d2b21b80be184253fd9f8541f6029fc5",
    "magic": "b9553a1d84d966db55a24a779206cc4565bf3686c9ecbc31215f654129e3166e",
    "medicine": "18b8c7b098e649024159c9d9f3e37a0832bbd2d5cf3e2317b313134761afd487",
    "men-women": "8fc4eb68a8d16826372d9bfdc910c8ab917b8aa59e2aac533f3ec2b49a1314ba",
    "miscellaneous": "e3d81fd016f9f84a70ecb9aa197c4911aca01a8034e49345b81093f6751bba9c",
    "news": "4b8eebae510353d6f628dfdaf52bf8cbdafb891a122b146421c805b74f389617",
    "paradoxum": "85228975016fe975065eaf0baf55980d32d26f9e2fa99f69da4696d11ac02036",
    "people": "2afb4b9f577be114d2dca279bc5590ee8415e1405295d7d7626c888d82f338e8",
    "perl": "b19145eadf97c31add2e0a199d93ffa0eb92e00275c2724b7ad6b4e412113536",
    "pets": "084472564bc55df566733a224f8a737d78717132ec43628be0c2af466ac41ecc",
    "platitudes": "88448274efec3d2c0908cc11525c9b065b95a32c232a2c58c67a87dd88545ee5",
    "politics": "b56ca45a046edd5c459090a5c6b335332661b436e814b41ac87bb58065ad6131",
    "pratchett": "48410754f1b2091f418ac27421d2764628b23c91427b12809031cf2b39be5b0e",
    "riddles": "bcaaab907b156a18a8943f0768828b4f1a18d382497d0e2ef012fe6aaa27becc",
    "science": "7ab350b142ee6c70c1d8517c5a1b3790c09b190a62859427cad98e6e35a19fcc",
    "songs-poems": "eb714d297b468da91b6ca32baefb000279a3e3740b09f8a87db24fe58e010b1a",
    "sports": "b71dd524d7bca888ec1014fb849a8a15cf58017c59127e572d393ef7632c35c8",
    "startrek": "7b2e4c235b99452b2de4c47d67aae0faac2ea508a2d644609e4ef5db7653c39c",
    "tao": "4adddc35a122bb233a16c076abc0be0326ea3a68594146a6baee3b5f6489e12b",
    "translate-me": "a183879cf46ee4a6176f6b9f0f31adb6abfc6333b64f8fbebeba57017c81e12e",
    "wisdom": "9b0bd6b9331a68c9172219784a411c417c055ed69734edc7b4406795b87d4e94",
    "work": "ad8a0e104160e2c4782fa86e143cd60ffab2872985d4293ffd0af6df19dbfa28",
    "zippy": "b996a112c99a2d61782e1a9a1f3c5445122f18ac312485f2c78279e82ca33932",
}
EXCLUDED = {"ascii-art": "ASCII drawings; meaningless once whitespace is collapsed"}
LABEL_CATEGORIES = ("computers", "politics", "science", "startrek", "zippy")

MIN_CHARS = 20
MAX_CHARS = 1200
SEED = 0

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "datasets", "fortunes")

OVERSTRIKE = re.compile("[^\b\n]\b")
CONTROL = re.compile("[\u0000-\u0008\u000b-\u001f\u007f-\u009f]")
NON_ALNUM = re.compile(r"[\W_]+")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def check(name, got, want, strict):
    if got == want:
        return
    msg = "%s sha256 mismatch: got %s, expected %s" % (name, got, want)
    if strict:
        sys.exit(msg + " (use --no-verify to proceed anyway)")
    print("WARNING:", msg, file=sys.stderr)


# ---------------------------------------------------------------- input

def read_ar(data):
    """Members of a Unix ar archive (the .deb container) as {name: bytes}."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    pos, out = 8, {}
    while pos + 60 <= len(data):
        hdr = data[pos:pos + 60]
        if hdr[58:60] != b"`\n":
            raise ValueError("bad ar member header at offset %d" % pos)
        name = hdr[0:16].decode("ascii").strip().rstrip("/")
        size = int(hdr[48:58].decode("ascii").strip())
        pos += 60
        out[name] = data[pos:pos + size]
        pos += size + (size & 1)
    return out


def open_member_tar(members, stem):
    for name, blob in members.items():
        if name.startswith(stem + ".tar"):
            comp = name[len(stem) + len(".tar"):].lstrip(".")
            if comp not in ("", "xz", "gz", "bz2"):
                sys.exit("%s is compressed with %s, which Python's tarfile cannot read; "
                         "extract with `dpkg-deb -x` and use --tree" % (name, comp))
            return tarfile.open(fileobj=io.BytesIO(blob), mode="r:" + comp if comp else "r:")
    sys.exit("no %s.tar* member in .deb" % stem)


def read_deb(path, strict):
    """Returns (package, version, {category: bytes}, copyright bytes or None)."""
    with open(path, "rb") as f:
        data = f.read()
    members = read_ar(data)
    with open_member_tar(members, "control") as t:
        control = t.extractfile(t.getmember("./control")).read().decode("utf-8")
    fields = dict(re.findall(r"^([A-Za-z-]+): *(.*)$", control, re.M))
    pkg, ver = fields.get("Package"), fields.get("Version")
    if pkg in DEBS:
        check(os.path.basename(path), sha256(data), DEBS[pkg][1], strict)
    else:
        print("WARNING: %s is package %r, not one of %s" % (path, pkg, sorted(DEBS)),
              file=sys.stderr)
    files, copyright_ = {}, None
    with open_member_tar(members, "data") as t:
        for m in t.getmembers():
            name = m.name[2:] if m.name.startswith("./") else m.name
            if not m.isfile():
                continue
            if name == COPYRIGHT_PATH:
                copyright_ = t.extractfile(m).read()
            elif name.startswith(DATA_DIR):
                files[name[len(DATA_DIR):]] = t.extractfile(m).read()
    print("  %s: package %s version %s, sha256 %s, %d files under %s"
          % (os.path.basename(path), pkg, ver, sha256(data), len(files), DATA_DIR))
    return files, copyright_


def read_tree(root):
    files, copyright_ = {}, None
    base = os.path.join(root, DATA_DIR)
    if not os.path.isdir(base):
        sys.exit("%s: no %s directory" % (root, DATA_DIR))
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for fn in sorted(filenames):
            p = os.path.join(dirpath, fn)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, "rb") as f:
                files[os.path.relpath(p, base).replace(os.sep, "/")] = f.read()
    cp = os.path.join(root, COPYRIGHT_PATH)
    if os.path.isfile(cp):
        with open(cp, "rb") as f:
            copyright_ = f.read()
    print("  %s: %d files under %s" % (root, len(files), DATA_DIR))
    return files, copyright_


def apt_download(dest):
    cmd = ["apt-get", "download"] + ["%s=%s" % (p, DEBIAN_VERSION) for p in sorted(DEBS)]
    print("running (in %s): %s" % (dest, " ".join(cmd)), file=sys.stderr)
    subprocess.check_call(cmd, cwd=dest)
    paths = []
    for pkg in sorted(DEBS):
        p = os.path.join(dest, DEBS[pkg][0])
        if not os.path.exists(p):
            sys.exit("apt-get did not produce %s (try `apt-get update` first)" % p)
        paths.append(p)
    return paths


def collect(sources, strict):
    """Merge the category files of all sources; check names and sha256."""
    raw, copyright_ = {}, None
    for files, cp in sources:
        if cp is not None:
            copyright_ = cp
        for name, data in files.items():
            if name.endswith(".dat") or name.endswith(".u8"):
                continue
            if "/" in name:  # e.g. off/...: never read sub-directories
                print("  skipping %s%s (sub-directory)" % (DATA_DIR, name), file=sys.stderr)
                continue
            if name in raw:
                sys.exit("category file %s found in two inputs" % name)
            raw[name] = data
    missing = sorted(set(FILE_SHA256) - set(raw))
    extra = sorted(set(raw) - set(FILE_SHA256))
    if missing or extra:
        msg = "category files: missing %s, unexpected %s" % (missing, extra)
        if strict:
            sys.exit(msg + " (need both fortunes and fortunes-min; --no-verify to proceed)")
        print("WARNING:", msg, file=sys.stderr)
    for name in sorted(raw):
        if name in FILE_SHA256:
            check(name, sha256(raw[name]), FILE_SHA256[name], strict)
    if copyright_ is None:
        sys.exit("no %s in the input (it is in the `fortunes` package)" % COPYRIGHT_PATH)
    check("copyright", sha256(copyright_), COPYRIGHT_SHA256, strict)
    return raw, copyright_


# ------------------------------------------------------------ cleaning

def split_entries(text):
    entries, cur = [], []
    for line in text.split("\n"):
        if line.rstrip("\r") == "%":
            entries.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    entries.append("\n".join(cur))
    return [e for e in entries if e.strip()]


def clean(entry, stats):
    fixed = False
    while not entry.isascii():
        try:
            repaired = entry.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            break
        entry, fixed = repaired, True
    stats["mojibake_fixed"] += fixed
    while True:
        stripped = OVERSTRIKE.sub("", entry)
        if stripped == entry:
            break
        entry = stripped
    entry = CONTROL.sub("", entry)
    return " ".join(entry.split())


def key_of(text):
    return NON_ALNUM.sub("", text.casefold())


def build(raw):
    """Returns (unique: list of (key, text, category)), per-category {key: text},
    per-category stats."""
    unique, seen = [], set()
    per_cat, stats = {}, {}
    for cat in sorted(raw):
        if cat in EXCLUDED:
            continue
        st = {"entries": 0, "too_short": 0, "too_long": 0, "dup_in_file": 0,
              "dup_earlier_file": 0, "kept": 0, "mojibake_fixed": 0}
        texts = {}
        for e in split_entries(raw[cat].decode("utf-8")):
            st["entries"] += 1
            t = clean(e, st)
            if len(t) < MIN_CHARS:
                st["too_short"] += 1
                continue
            if len(t) > MAX_CHARS:
                st["too_long"] += 1
                continue
            k = key_of(t)
            if k in texts:
                st["dup_in_file"] += 1
                continue
            texts[k] = t
            if k in seen:
                st["dup_earlier_file"] += 1
                continue
            seen.add(k)
            unique.append((k, t, cat))
            st["kept"] += 1
        per_cat[cat] = texts
        stats[cat] = st
    return unique, per_cat, stats


def split(unique, per_cat):
    owners = {}
    for c in LABEL_CATEGORIES:
        for k in per_cat[c]:
            owners.setdefault(k, []).append(c)
    ambiguous = {k for k, cs in owners.items() if len(cs) > 1}
    rng = random.Random(SEED)
    train, test = [], []
    for c in sorted(LABEL_CATEGORIES):
        items = [(t, c) for k, t in per_cat[c].items() if k not in ambiguous]
        rng.shuffle(items)
        n = len(items) * 4 // 5
        train.extend(items[:n])
        test.extend(items[n:])
    rng.shuffle(train)
    rng.shuffle(test)
    test_keys = {key_of(t) for t, _ in test}
    corpus = [t for k, t, _ in unique if k not in test_keys]
    rng.shuffle(corpus)
    return train, test, corpus, len(ambiguous)


# -------------------------------------------------------------- output

def jsonl(rows):
    return "".join(json.dumps({"text": t, "label": c}, ensure_ascii=False) + "\n"
                   for t, c in rows).encode("utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deb", action="append", default=[],
                    help="a fortunes / fortunes-min .deb (repeat for both)")
    ap.add_argument("--tree", action="append", default=[],
                    help="a tree extracted with dpkg-deb -x (repeat for both packages)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--no-verify", action="store_true",
                    help="warn instead of failing on a sha256 mismatch or missing file")
    args = ap.parse_args()
    strict = not args.no_verify

    print("inputs:")
    if args.deb or args.tree:
        sources = [read_deb(p, strict) for p in args.deb] + [read_tree(d) for d in args.tree]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            sources = [read_deb(p, strict) for p in apt_download(tmp)]
    raw, copyright_ = collect(sources, strict)

    unique, per_cat, stats = build(raw)
    train, test, corpus, n_ambiguous = split(unique, per_cat)

    print("per category (after cleaning; 'kept' = new unique entries in the corpus pool):")
    print("  %-14s %7s %6s %5s %7s %9s %6s  %s" % ("category", "entries", "short", "long",
                                                  "dup-in", "dup-prev", "kept", "labelled"))
    tot = {}
    for cat in sorted(stats):
        st = stats[cat]
        for k, v in st.items():
            tot[k] = tot.get(k, 0) + v
        lab = ""
        if cat in LABEL_CATEGORIES:
            lab = "train %d / test %d" % (sum(1 for _, c in train if c == cat),
                                          sum(1 for _, c in test if c == cat))
        print("  %-14s %7d %6d %5d %7d %9d %6d  %s" % (
            cat, st["entries"], st["too_short"], st["too_long"], st["dup_in_file"],
            st["dup_earlier_file"], st["kept"], lab))
    print("  %-14s %7d %6d %5d %7d %9d %6d" % (
        "total", tot["entries"], tot["too_short"], tot["too_long"], tot["dup_in_file"],
        tot["dup_earlier_file"], tot["kept"]))
    print("excluded categories: %s" % EXCLUDED)
    print("entries with mojibake repaired: %d; keys shared by two labelled categories (unlabelled): %d"
          % (tot["mojibake_fixed"], n_ambiguous))

    outputs = {
        "corpus.txt": "".join(t + "\n" for t in corpus).encode("utf-8"),
        "train.jsonl": jsonl(train),
        "test.jsonl": jsonl(test),
        "COPYRIGHT": copyright_,
    }
    os.makedirs(args.out, exist_ok=True)
    for name, data in outputs.items():
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)

    # Verify by reading everything back from disk.
    def read(name):
        with open(os.path.join(args.out, name), "rb") as f:
            return f.read().decode("utf-8")
    corpus_back = read("corpus.txt").split("\n")
    assert corpus_back[-1] == "" and corpus_back[:-1] == corpus
    train_back = [json.loads(l) for l in read("train.jsonl").splitlines()]
    test_back = [json.loads(l) for l in read("test.jsonl").splitlines()]
    assert [(r["text"], r["label"]) for r in train_back] == train
    assert [(r["text"], r["label"]) for r in test_back] == test
    corpus_keys = {key_of(t) for t in corpus}
    assert len(corpus_keys) == len(corpus), "duplicate in corpus"
    assert all(key_of(r["text"]) not in corpus_keys for r in test_back), "test text in corpus"
    assert all(key_of(r["text"]) in corpus_keys for r in train_back), "train text not in corpus"
    assert not ({key_of(r["text"]) for r in train_back} & {key_of(r["text"]) for r in test_back})
    assert all("\n" not in t and "\r" not in t and MIN_CHARS <= len(t) <= MAX_CHARS
               for t in corpus)
    words = sum(len(t.split()) for t in corpus)
    chars = sum(len(t) for t in corpus)
    print("verification (read back from %s):" % args.out)
    print("  corpus: %d lines, %d words (%.1f words/line), %d chars (%.1f chars/line), "
          "%d bytes" % (len(corpus), words, words / len(corpus), chars, chars / len(corpus),
                        len(outputs["corpus.txt"])))
    print("  train: %d, test: %d; test keys absent from corpus; train keys all in corpus; "
          "train/test disjoint" % (len(train), len(test)))
    assert len(unique) == len(corpus) + len(test)
    print("  unique entries %d = corpus %d + test %d" % (len(unique), len(corpus), len(test)))

    print("sha256 of output files:")
    for name in sorted(outputs):
        print("  %s  %s  (%d bytes)" % (sha256(outputs[name]), name, len(outputs[name])))


if __name__ == "__main__":
    main()
