"""Measured tables live in the docs between markers, so each tool rewrites its own table and nothing else."""


def markers(name):
    """The opening and closing markers of block `name` (HTML comments: invisible on the rendered page)."""
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


def write_block(path, name, text):
    """Puts `text` between block `name`'s markers in the file `path`, appending the block if it has none."""
    begin, end = markers(name)
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    block = f"{begin}\n{text.strip(chr(10))}\n{end}"
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)
