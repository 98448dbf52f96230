"""Images: named root filesystems that `pyctr run IMAGE` starts from.

    store.py    the store: image dirs, image.json, lookup, ls/rm, gc, staging
    recipes.py  `pyctr image build`: TOML recipes, their bases (deb, mmdebstrap/debootstrap,
                host files) and steps (applets, dirs, links, files)
    archive.py  `pyctr image import`: rootfs tarballs, `docker save` archives, OCI layouts
    inroot.py   paths inside a rootfs that is not ours to trust
    cli.py      the `pyctr image` verb

What the rest of pyctr uses is here. The store's names are loaded at once (cheap: `pyctr run`
calls lookup()); building and importing only when first used.
"""
from pyctr.images.store import DEFAULT_IMAGE, Image, gc, list_images, lookup, remove, valid_name

# name -> module of this package that defines it, imported on first use
_LAZY = {"build": "recipes", "ensure_default": "recipes", "find_recipe": "recipes",
         "recipe_names": "recipes", "is_static_elf": "recipes",
         "import_archive": "archive"}

__all__ = ["DEFAULT_IMAGE", "Image", "gc", "list_images", "lookup", "remove", "valid_name",
           *_LAZY]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    return getattr(__import__("pyctr.images." + module, fromlist=[name]), name)
