"""`pyctr image build|import|ls|inspect|rm`."""
import os

from pyctr.errors import PyctrError
from pyctr.images import archive, recipes, store

_USAGE = """usage: pyctr image SUBCOMMAND [ARGS...]

subcommands:
  build [--name NAME] RECIPE|FILE.toml   build an image from a recipe (%s)
  import [--name NAME] FILE.tar          import a rootfs tarball, docker-save archive or OCI layout
  ls [-q]                                list images
  inspect NAME                           print an image's image.json
  rm NAME...                             remove images"""


def command(paths, argv):
    """`pyctr image ...`"""
    from pyctr.cli import arg_parser

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_USAGE % (", ".join(recipes.recipe_names()) or "none found"))
        return 0
    sub, rest = argv[0], argv[1:]
    if sub == "build":
        ap = arg_parser("image build", "Build an image from a recipe: a name from %s or a "
                        ".toml file." % " or ".join(recipes.recipe_dirs()))
        ap.add_argument("--name", help="image name (default: the recipe's)")
        ap.add_argument("recipe", metavar="RECIPE|FILE.toml")
        a = ap.parse_args(rest)
        print(recipes.build(paths, a.recipe, a.name).name)
    elif sub == "import":
        ap = arg_parser("image import", "Import a plain rootfs tarball, a `docker save` "
                        "archive or an OCI image layout tarball (compressed or not).")
        ap.add_argument("--name", help="image name (default: the archive's tag or file name)")
        ap.add_argument("archive", metavar="FILE.tar")
        a = ap.parse_args(rest)
        print(archive.import_archive(paths, a.archive, a.name).name)
    elif sub in ("ls", "list"):
        ap = arg_parser("image ls", "List stored images.")
        ap.add_argument("-q", "--quiet", action="store_true", help="names only")
        a = ap.parse_args(rest)
        _print_images(store.list_images(paths), a.quiet)
    elif sub == "inspect":
        ap = arg_parser("image inspect", "Print an image's metadata as JSON.")
        ap.add_argument("name")
        a = ap.parse_args(rest)
        img = store.lookup(paths, a.name)
        if img is None:
            raise PyctrError("no such image: %s" % a.name)
        import json
        with open(os.path.join(img.path, "image.json"), encoding="utf-8") as f:
            meta = json.load(f)
        meta["rootfs"] = img.rootfs
        print(json.dumps(meta, indent=2))
    elif sub in ("rm", "remove"):
        ap = arg_parser("image rm", "Remove images.")
        ap.add_argument("names", nargs="+", metavar="NAME")
        a = ap.parse_args(rest)
        store.remove(paths, a.names)
    else:
        raise PyctrError("image: unknown subcommand %r (build, import, ls, inspect, rm)" % sub)
    return 0


def _print_images(images, quiet):
    if quiet:
        for img in images:
            print(img.name)
        return
    from pyctr.cli import print_table
    print_table([("NAME", "SIZE", "CREATED", "SOURCE")]
                + [(img.name, _human_size(img.size), _ago(img.created), img.source)
                   for img in images])


def _human_size(n):
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1000.0


def _ago(created):
    import calendar
    import time
    try:
        then = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return "?"
    s = max(0, int(time.time() - then))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if s >= size:
            n = s // size
            return "%d %s%s ago" % (n, unit, "s" if n > 1 else "")
    return "just now"
