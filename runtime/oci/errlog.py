"""--log FILE --log-format text|json: runc's log, which engines read a
failure from (podman with runtime_supports_json, containerd's shim). A line
per message, appended: json is {"level": ..., "msg": ..., "time": RFC 3339},
text is logrus's `time="..." level=... msg="..."`, as runc writes them."""
import time

from pyctr import posixos as os  # os without its import cost: see posixos


def write(path, log_format, level, message):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if log_format == "json":
        from pyctr import jsonio
        line = jsonio.dumps({"level": level, "msg": message, "time": stamp})
    else:
        line = 'time="%s" level=%s msg=%s' % (stamp, level, _quote(message))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (line + "\n").encode(errors="replace"))
        finally:
            os.close(fd)
    except OSError:
        pass  # the message still goes to stderr; a broken log must not hide it


def _quote(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
