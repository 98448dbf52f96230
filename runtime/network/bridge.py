"""A bridge pyctr makes or removes for a veth network, so that a crash at
any step leaves nothing the next start, `pyctr gc` or `pyctr net rm` cannot
repair.

Making one takes several netlink requests (the bridge; its alias, which
the kernel ignores in the creating request; the uplink as a port; the
uplink's addresses and gateway routes moved over, or the gateway address),
and a bridge port's own address no longer receives: a crash half-way
through leaves the node without its address. So, with the pool's lock
held (veth.attach, cleanup.teardown, gc):

  1. a journal, <pool dir>/.bridge, records the change about to be made:
     the bridge, its temporary name, and the uplink's addresses, gateway
     routes and up state as they are now (written whole or not at all);
  2. the bridge is made under a temporary name, pyb<container id>, which
     only pyctr uses, then gets its alias and the uplink or its address;
  3. it is renamed to its final name: the network's bridge appears complete
     or not at all;
  4. the journal goes.

Removing one (a failed start's undo, `net rm`) journals the same way,
then gives the uplink back what the bridge had taken and deletes it.

Whoever next holds the pool's lock and finds a journal knows that its
writer died half-way (recover()): a bridge being made and not yet renamed
is deleted, one being removed is removed, and the uplink gets back the
addresses, routes and up state the journal lists. A bridge already renamed
is complete and kept; only its journal goes.
"""
import errno
import os

from pyctr import jsonio
from pyctr.network import RESTORED
from pyctr.network.addr import int_ip

ALIAS = "pyctr network "  # ifalias of the bridges pyctr made
TEMP_PREFIX = "pyb"       # a bridge being made, before its final name
JOURNAL = ".bridge"


def temp_name(container_id):
    return (TEMP_PREFIX + "".join(c for c in container_id if c.isalnum()))[:15]


def is_temp(name):
    return name.startswith(TEMP_PREFIX)


def pending(pool):
    """Is a journal there? (Read without the lock: recover() takes it.)"""
    return os.path.exists(os.path.join(pool.dir, JOURNAL))


def make(host, pool, net, uplink, container_id, mac, mtu):
    """Make the bridge of net (pool locked): its uplink, or net.gateway as
    its address. Returns its Link. On an OSError what is made is undone."""
    temp = temp_name(container_id)
    _journal(pool, "make", host, net.device, temp, uplink)
    try:
        host.create_bridge(temp, mtu=mtu, mac=mac)
        br = host.link(temp)
        host.set_link(br.index, alias=ALIAS + net.name)  # what `net rm` may remove
        if uplink is not None:
            _adopt_uplink(host, br, uplink)
        elif net.gateway is not None:
            host.add_addr(br.index, int_ip(net.gateway), net.subnet.prefix)
        _rename(host, br, net.device)
    except OSError:
        try:
            recover(host, pool)
        except OSError:
            pass  # the journal stays: the next start or `pyctr gc` retries
        raise
    _forget(pool)
    return host.link(net.device)


def delete(host, pool, name, uplink):
    """Delete bridge `name` (pool locked), giving the uplink back the
    addresses and gateway routes it had taken. True if it was there."""
    br = host.link(name)
    if br is None:
        return False
    if uplink is not None:
        _journal(pool, "remove", host, name, None, uplink, br)
    host.delete_link(index=br.index)
    if uplink is not None:
        recover(host, pool)
    return True


def recover(host, pool):
    """Finish what a journal records (pool locked): see the module's
    docstring. Returns what changed on the host, for `pyctr gc` to print."""
    j = _read(pool)
    if j is None:
        try:  # a journal's writer that died before renaming it had changed nothing
            os.unlink(os.path.join(pool.dir, JOURNAL + ".new"))
        except FileNotFoundError:
            pass
        return []
    done = []
    final = host.link(j["bridge"])
    temp = host.link(j["temp"]) if j["temp"] else None
    if j["op"] == "make" and temp is None and _ours(final):
        _forget(pool)  # renamed: complete, and kept
        return done
    # The temporary name is pyctr's alone; the final one is deleted only if
    # being removed and pyctr's (an admin may have made one since).
    doomed = [temp] if temp is not None and temp.link_type == "bridge" else []
    if j["op"] == "remove" and _ours(final):
        doomed.append(final)
    for br in doomed:
        if host.delete_link(index=br.index):
            done.append("unfinished bridge %s (%s)" % (j["bridge"], br.name))
    uplink = host.link(j["uplink"]) if j["uplink"] else None
    if uplink is not None:
        done += _restore_uplink(host, uplink, j)
    _forget(pool)
    return done


def _ours(link):
    return link is not None and link.link_type == "bridge" \
        and (link.alias or "").startswith(ALIAS)


def _rename(host, br, name):
    try:
        host.set_link(br.index, name=name)
    except OSError as e:
        if e.errno != errno.EBUSY:  # kernels before 6.2 rename only links that are down
            raise
        host.set_link(br.index, up=False)
        host.set_link(br.index, name=name)
        host.set_link(br.index, up=True)


# -- the uplink --------------------------------------------------------------------

def gateway_routes(host, link):
    """The routes via a gateway on link that pyctr moves with its addresses."""
    from pyctr.network.rtnl import RTPROT_KERNEL
    return [r for r in host.routes() if r["oif"] == link.index
            and r["protocol"] != RTPROT_KERNEL and r["gateway"]]


def _move_route(host, r, oif):
    host.add_route(r["dst"], r["dst_len"], gateway=r["gateway"], oif=oif, src=r.get("src"),
                   replace=True, protocol=r["protocol"], metric=r.get("metric"))


def _adopt_uplink(host, br, uplink):
    """Put the uplink in the bridge and move its IPv4 addresses and routes
    to the bridge (a bridge port's own address no longer receives)."""
    addrs = host.addrs(uplink.index)
    routes = gateway_routes(host, uplink)
    host.set_link(uplink.index, master=br.index, up=True)
    for _, ip, prefix in addrs:
        host.del_addr(uplink.index, ip, prefix)
        host.add_addr(br.index, ip, prefix)
    for r in routes:
        _move_route(host, r, br.index)


def _restore_uplink(host, uplink, j):
    """Give the uplink back the journal's addresses, routes and up state
    (whatever of them it lacks). Returns what it did."""
    done = []
    for ip, prefix in j["addrs"]:
        try:
            host.add_addr(uplink.index, ip, prefix)
            done.append(RESTORED + "address %s/%d of %s" % (ip, prefix, uplink.name))
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
    have = {(r["dst"], r["dst_len"], r["gateway"]) for r in gateway_routes(host, uplink)}
    for r in j["routes"]:
        if (r["dst"], r["dst_len"], r["gateway"]) not in have:
            _move_route(host, r, uplink.index)
            done.append(RESTORED + "route %s/%d via %s on %s"
                        % (r["dst"], r["dst_len"], r["gateway"], uplink.name))
    if host.link(index=uplink.index).up != j["up"]:
        host.set_link(uplink.index, up=j["up"])
        done.append(RESTORED + "%s %s" % (uplink.name, "up" if j["up"] else "down"))
    return done


# -- the journal -------------------------------------------------------------------

def _journal(pool, op, host, bridge, temp, uplink, holder=None):
    """Write the journal of op on bridge: the uplink's state to give back,
    as it is now (make), or as the bridge `holder` holds it (remove)."""
    source = holder or uplink
    j = {"op": op, "bridge": bridge, "temp": temp, "uplink": None, "up": False,
         "addrs": [], "routes": []}
    if uplink is not None:
        j.update(uplink=uplink.name, up=uplink.up,
                 addrs=[[ip, prefix] for _, ip, prefix in host.addrs(source.index)],
                 routes=[{k: r.get(k) for k in ("dst", "dst_len", "gateway", "src", "protocol",
                                                 "metric")}
                         for r in gateway_routes(host, source)])
    path = os.path.join(pool.dir, JOURNAL)
    try:
        with open(path + ".new", "w") as f:
            f.write(jsonio.dumps(j))
    except OSError:
        os.unlink(path + ".new")  # a full disk: nothing changed yet, nothing to recover
        raise
    os.replace(path + ".new", path)


def _read(pool):
    try:
        with open(os.path.join(pool.dir, JOURNAL)) as f:
            return jsonio.loads(f.read())
    except FileNotFoundError:
        return None


def _forget(pool):
    try:
        os.unlink(os.path.join(pool.dir, JOURNAL))
    except FileNotFoundError:
        pass
