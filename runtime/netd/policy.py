"""Who may use which network through the helper: the administrator's
policy file, paths.config/policy.toml (default /etc/pyctr/policy.toml),
beside the network definitions. Without the file, nobody may.

    [network.lan]            # a network defined with `pyctr net create lan`
    users = ["alice"]        # user names
    groups = ["hpc"]         # group names (the caller's primary or supplementary)
    max_containers = 8       # leases a user holds on it at once (default 8)
    choose_ip = false        # may a user pass ip=... (default false)
    choose_mac = false       # may a user pass mac=... (default false)

max_containers counts the user's live leases on the network's device (its
bridge or lower device), the pool its addresses come from: two networks on
one bridge share the count. The daemon reads it at each request, so a change needs no restart; a file
that does not parse refuses every request with the reason.
"""
import os

from pyctr import tomlio
from pyctr.errors import PyctrError

FILE = "policy.toml"
DEFAULT_MAX_CONTAINERS = 8
GRANT_KEYS = {"users": list, "groups": list, "max_containers": int, "choose_ip": bool,
              "choose_mac": bool}


class Grant:
    """What the policy says of one network."""
    __slots__ = ("network", "users", "groups", "max_containers", "choose_ip", "choose_mac")

    def __init__(self, network, users=(), groups=(), max_containers=DEFAULT_MAX_CONTAINERS,
                 choose_ip=False, choose_mac=False):
        self.network, self.users, self.groups = network, tuple(users), tuple(groups)
        self.max_containers = max_containers
        self.choose_ip, self.choose_mac = choose_ip, choose_mac

    def admits(self, user, gids):
        """Is the user (a name, or None without a passwd entry) or one of
        its group ids named?"""
        if user is not None and user in self.users:
            return True
        return any(gid in gids for gid in _group_ids(self.groups))

    def __repr__(self):
        return "Grant(%s users=%s groups=%s)" % (self.network, self.users, self.groups)


class Policy:
    __slots__ = ("path", "grants")

    def __init__(self, path, grants=None):
        self.path = path
        self.grants = dict(grants or {})  # network name -> Grant

    def grant(self, network, user, gids):
        """The Grant of network if it admits the caller, else None."""
        grant = self.grants.get(network)
        if grant is not None and grant.admits(user, gids):
            return grant
        return None

    def granted(self, user, gids):
        """The Grants that admit the caller, by network name."""
        return [g for _, g in sorted(self.grants.items()) if g.admits(user, gids)]


def path(paths):
    return os.path.join(paths.config, FILE)


def load(paths):
    """The Policy in paths.config; an empty one (nobody may) if there is no file."""
    where = path(paths)
    try:
        with open(where, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return Policy(where)
    except OSError as e:
        raise PyctrError("cannot read policy %s: %s" % (where, e.strerror)) from e
    return from_dict(tomlio.loads(raw, "policy %s" % where), where)


def from_dict(data, where):
    from pyctr.network.config import check_name
    extra = sorted(k for k in data if k != "network")
    if extra:
        raise PyctrError("policy %s: unknown key %s (only [network.NAME] tables)"
                         % (where, extra[0]))
    networks = data.get("network", {})
    if not isinstance(networks, dict):
        raise PyctrError("policy %s: network must be a table of [network.NAME]" % where)
    grants = {}
    for name, table in networks.items():
        try:
            check_name(name)
        except PyctrError as e:
            raise PyctrError("policy %s: %s" % (where, e)) from e
        grants[name] = _grant(name, table, where)
    return Policy(where, grants)


def _grant(name, table, where):
    if not isinstance(table, dict):
        raise PyctrError("policy %s: network.%s must be a table" % (where, name))
    for key, value in table.items():
        want = GRANT_KEYS.get(key)
        if want is None:
            raise PyctrError("policy %s: network.%s: unknown key %s (%s)"
                             % (where, name, key, ", ".join(GRANT_KEYS)))
        if type(value) is not want:
            raise PyctrError("policy %s: network.%s: %s must be a %s, not %s"
                             % (where, name, key, _TYPE_WORDS[want], type(value).__name__))
        if want is list and not all(isinstance(x, str) and x for x in value):
            raise PyctrError("policy %s: network.%s: %s must be a list of names"
                             % (where, name, key))
    limit = table.get("max_containers", DEFAULT_MAX_CONTAINERS)
    if limit < 0:
        raise PyctrError("policy %s: network.%s: max_containers must be 0 or more"
                         % (where, name))
    return Grant(name, table.get("users", ()), table.get("groups", ()), limit,
                 table.get("choose_ip", False), table.get("choose_mac", False))


_TYPE_WORDS = {list: "list", int: "number", bool: "boolean (true or false)"}


def _group_ids(names):
    import grp
    out = set()
    for name in names:
        try:
            out.add(grp.getgrnam(name).gr_gid)
        except KeyError:
            continue  # a group this host does not have admits nobody
    return out


def user_name(uid):
    """The passwd name of uid, or None."""
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
