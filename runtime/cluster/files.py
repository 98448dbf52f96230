"""A cluster's files, in <state root>/clusters/NAME/ (tmpfs, like the
containers):

  cluster.json   what `up` made (nodes, addresses, network, host side)
  hosts          every node's /etc/hosts (rewritten in place: it is a bind mount)
  hostfile       Open MPI's;  hosts.mpich  MPICH's (hydra)
  agent          the remote agent: AGENT [options] HOST COMMAND...
"""
import json
import os
import stat

from pyctr.errors import PyctrError


def clusters_dir(paths):
    return os.path.join(paths.root, "clusters")


def cluster_dir(paths, name):
    return os.path.join(clusters_dir(paths), name)


def make_dir(paths, name):
    os.makedirs(clusters_dir(paths), mode=0o711, exist_ok=True)
    try:
        os.mkdir(cluster_dir(paths, name), 0o755)
    except FileExistsError as e:
        raise PyctrError("cluster %s already exists (pyctr cluster down %s)"
                         % (name, name)) from e


def names(paths):
    try:
        return sorted(os.listdir(clusters_dir(paths)))
    except FileNotFoundError:
        return []


def load(paths, name):
    from pyctr.cluster.plan import check_name
    check_name(name)
    try:
        with open(os.path.join(cluster_dir(paths, name), "cluster.json")) as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise PyctrError("no such cluster: %s (pyctr cluster ls)" % name) from e
    except ValueError as e:
        raise PyctrError("cluster %s: damaged cluster.json (%s)" % (name, e)) from e


def hosts_text(record):
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += ["%s\t%s" % (n["ip"], n["name"]) for n in record["nodes"]]
    return "\n".join(lines) + "\n"


def write(paths, record):
    """Every node's /etc/hosts, the hostfiles, the agent, then cluster.json
    (last and atomically: a cluster with a record is complete)."""
    from pyctr.state import StateStore
    d = cluster_dir(paths, record["name"])
    hosts = hosts_text(record)
    store = StateStore(paths)
    for n in record["nodes"]:
        if n["here"]:
            # The container's /etc/hosts is a bind mount of this file: rewrite
            # it in place (a new file would not be what the container sees).
            with open(os.path.join(store.dir(n["name"]), "hosts"), "r+") as f:
                f.write(hosts)
                f.truncate()
    files = {"hosts": hosts,
             "hostfile": "".join("%s slots=%d\n" % (n["name"], record["slots"])
                                 for n in record["nodes"]),
             "hosts.mpich": "".join("%s:%d\n" % (n["name"], record["slots"])
                                    for n in record["nodes"])}
    for fname, text in files.items():
        with open(os.path.join(d, fname), "w") as f:
            f.write(text)
    write_agent(os.path.join(d, "agent"), {n["name"]: n["exec"] for n in record["nodes"]
                                           if n["exec"]})
    tmp = os.path.join(d, "cluster.json.tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.rename(tmp, os.path.join(d, "cluster.json"))


def write_agent(path, routes):
    """The remote agent MPI launchers run instead of ssh: `AGENT [ssh
    options] HOST COMMAND...` runs COMMAND through routes[HOST], an argv
    prefix (`pyctr exec NODE`, `ip netns exec NS`, ...). Open MPI passes the
    orted command line as shell words, so it runs under sh -c."""
    import shlex
    lines = ["#!/bin/sh", "# pyctr: the MPI launcher's remote agent (no sshd needed)",
             'while [ $# -gt 0 ]; do case $1 in -*) shift;; *) break;; esac; done',
             'host=$1; shift', 'case $host in']
    for host, prefix in routes.items():
        lines.append('  %s) exec %s sh -c "$*";;' % (host, " ".join(shlex.quote(a)
                                                                   for a in prefix)))
    lines += ['esac', 'echo "pyctr agent: unknown host $host" >&2', 'exit 255', ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return path
