"""How a pyctr command ends (cli.exit_with): without the interpreter's
teardown where nothing needs it, but never losing output, an atexit
callback or a thread's work on the way."""
import json
import subprocess
import sys

import pytest


def _python(code, tmp_path, **kw):
    return subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), timeout=60, **kw)


def test_output_to_a_pipe_arrives_whole(tmp_path):
    """`pyctr spec` writes kilobytes of JSON, block-buffered into a pipe."""
    r = subprocess.run([sys.executable, "-m", "pyctr", "--root", str(tmp_path / "run"),
                        "spec", str(tmp_path), "/bin/true"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) > 4096
    assert json.loads(r.stdout)["process"]["args"] == ["/bin/true"]


@pytest.mark.parametrize("code", [0, 3, 125, 300])
def test_the_exit_code_is_mains(tmp_path, code):
    r = _python("from pyctr.cli import exit_with; exit_with(%d)" % code, tmp_path)
    assert r.returncode == code & 0xFF


def test_buffered_output_is_flushed(tmp_path):
    r = _python("import sys; sys.stdout.write('x' * 100); sys.stderr.write('e');"
                "from pyctr.cli import exit_with; exit_with(7)", tmp_path,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert (r.returncode, r.stdout, r.stderr) == (7, b"x" * 100, b"e")


def test_atexit_callbacks_still_run(tmp_path):
    r = _python("import atexit; atexit.register(lambda: open('ran', 'w').close());"
                "from pyctr.cli import exit_with; exit_with(4)", tmp_path)
    assert r.returncode == 4
    assert (tmp_path / "ran").exists()


def test_a_running_thread_is_waited_for(tmp_path):
    r = _python("import threading, time\n"
                "def work():\n"
                "    time.sleep(0.3)\n"
                "    open('done', 'w').close()\n"
                "threading.Thread(target=work).start()\n"
                "from pyctr.cli import exit_with; exit_with(5)", tmp_path)
    assert r.returncode == 5
    assert (tmp_path / "done").exists()

