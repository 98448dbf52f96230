"""The nodes' lives: each is a detached container (pyctr.monitor) built
from a Spec like any `pyctr run -d`, started in this process; `teardown`
removes them, the host side `up` made, and the cluster's files."""
import json
import os

from pyctr.errors import PyctrError

# What a node runs; --init puts a reaper at PID 1, which reaps the orted
# daemons and ranks that mpirun starts in the node.
NODE_COMMAND = ("sleep", "infinity")
PROGRESS_FROM = 8   # nodes


def start(paths, record, net, addrs, here, remote):
    """Start the nodes of `record` that run here (node i at addrs[i], the
    MPI settings in record["env"]), then write the cluster's files.
    Anything started is removed again if any step fails."""
    from pyctr.cluster import files, launch
    from pyctr.cluster.plan import node_name
    from pyctr.state import StateStore
    name = record["name"]
    started = []
    try:
        with _progress("cluster up %s" % name, len(here) + 1) as prog:
            for i in here:
                node = node_name(name, i)
                prog.step("starting %s (%s)" % (node, addrs[i]))
                start_node(paths, record, net, node, addrs[i])
                started.append(node)
            prog.step("writing hosts, hostfiles and the agent")
            record["nodes"] = [{"index": i, "name": node_name(name, i), "ip": addrs[i],
                                "here": i in here,
                                "exec": launch.exec_route(paths, node_name(name, i))
                                if i in here else remote.get(i)}
                               for i in range(len(addrs))]
            if here:
                store = StateStore(paths)
                config = json.loads(store.read_file(node_name(name, here[0]), "config.json"))
                record["workdir"] = config["process"].get("cwd") or "/"
                if not launch.host_ifaces(net.subnet):
                    raise PyctrError("cluster up: this host has no address in %s after the "
                                     "nodes started; mpirun here could not reach them"
                                     % net.subnet)
            files.write(paths, record)
    except BaseException:
        teardown(paths, record, started)
        raise


def start_node(paths, record, net, node, ip):
    """One node: the Spec `pyctr run -d --init --name NODE --hostname NODE
    --net=NET,ip=IP/P -e ... -v ... IMAGE sleep infinity` would make,
    started by a monitor forked from this process."""
    from pyctr import specgen
    from pyctr.monitor import start_detached
    opts = {"target": record["image"], "command": list(NODE_COMMAND), "name": node,
            "hostname": node, "detach": True, "init": True,
            "net": ["%s,ip=%s/%d" % (net.text, ip, net.subnet.prefix)],
            "env": ["%s=%s" % kv for kv in sorted(record["env"].items())],
            "volumes": list(record["volumes"])}
    if paths.rootless:
        # The image's /tmp belongs to root, who is not mapped in a user's
        # container: mpirun's daemons need a session directory there.
        opts["tmpfs"] = ["/tmp"]
    try:
        start_detached(paths, specgen.build(paths, opts))
    except PyctrError as e:
        raise PyctrError("cluster up: node %s: %s" % (node, e), exit_code=e.exit_code) from e


def _progress(title, total):
    """Progress for big clusters only: a node starts in about 0.1 s, and a
    few lines of progress before an error would bury it."""
    from pyctr.progress import Progress
    return Progress(title, total, quiet=total <= PROGRESS_FROM)


def teardown(paths, record, nodes):
    """Remove the nodes (containers), the host side if `up` made it and
    nothing else uses it now, and the cluster's directory. Idempotent; used
    by `down` and to undo a failed `up`."""
    from pyctr.cluster import files
    from pyctr.state import StateStore
    from pyctr.verbs.remove import remove
    store = StateStore(paths)
    ours, problems = set(), []
    for node in reversed(nodes):
        try:
            st = store.load(node)
        except PyctrError:
            continue  # never started, or already gone
        ours.update(r.get("host_ifname") for r in st.networks if r.get("host_ifname"))
        try:
            remove(paths, st, force=True)
        except PyctrError as e:
            problems.append("%s: %s" % (node, e))
    if record.get("made_host_side"):
        try:
            drop_host_side(paths, record, ours)
        except (OSError, PyctrError) as e:
            problems.append("%s: %s" % (record.get("host_side"), e))
    if record["name"]:
        import shutil
        shutil.rmtree(files.cluster_dir(paths, record["name"]), ignore_errors=True)
        try:
            os.rmdir(files.clusters_dir(paths))
        except OSError:
            pass  # other clusters
    if problems:
        raise PyctrError("cluster %s: teardown incomplete: %s" % (record["name"],
                                                                  "; ".join(problems)))


def drop_host_side(paths, record, our_ports):
    """The bridge or macvlan shim the nodes' first attach made, unless some
    other live container uses it (network.teardown)."""
    from pyctr import network
    network.teardown(paths, record["kind"], record["device"], record.get("uplink"), our_ports)
