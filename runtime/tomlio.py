"""pyctr's one TOML module: job files, network definitions, image recipes.

Reading uses the standard library's strict parser (tomllib); writing uses
the `toml` package, since tomllib cannot write. Every failure is one
PyctrError line naming the file, with the parser's error as its cause.
"""
from pyctr.errors import PyctrError


def load(path, what="TOML file"):
    """The table in `path`. `what` names the file in errors ("job file",
    "network lan"); a missing file is an OSError-derived PyctrError."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise PyctrError("cannot read %s %s: %s" % (what, path, e.strerror)) from e
    return loads(raw, "%s %s" % (what, path))


def loads(raw, where):
    import tomllib
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise PyctrError("%s: not UTF-8 text (byte %d)" % (where, e.start)) from e
    except tomllib.TOMLDecodeError as e:
        raise PyctrError("%s: invalid TOML: %s" % (where, e)) from e


def dumps(data):
    import toml
    return toml.dumps(data)


def save(path, data, mode=0o644):
    """Write atomically (a reader never sees half a file)."""
    from pyctr import fileio
    fileio.replace(path, dumps(data).encode(), mode)
