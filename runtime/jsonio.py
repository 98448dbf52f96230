"""JSON for the start-up path: `json` imports `re` (and with it `enum`),
which costs more than the rest of `pyctr run`. The C accelerator `_json`
that `json` itself uses does the work without them. Off the hot path
(inspect, net, bench) plain `json` is fine and used."""
import _json


class _Context:
    # The attributes _json's scanner reads from json.JSONDecoder.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


def loads(text):
    ctx = _Context()
    ctx.memo = {}
    scan = _json.make_scanner(ctx)
    start = _skip_space(text, 0)
    try:
        value, end = scan(text, start)
    except StopIteration:
        raise ValueError("no JSON value at offset %d" % start)
    except SystemError as e:  # _json raises JSONDecodeError only once json.decoder is imported
        raise ValueError("invalid JSON after offset %d" % start) from e
    if _skip_space(text, end) != len(text):
        raise ValueError("extra data after offset %d" % end)
    return value


def _skip_space(text, i):
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _unsupported(obj):
    raise TypeError("cannot store %r as JSON" % type(obj).__name__)


_encode = _json.make_encoder(None, _unsupported, _json.encode_basestring_ascii, None,
                             ": ", ", ", False, False, True)


def dumps(obj):
    return "".join(_encode(obj, 0))
