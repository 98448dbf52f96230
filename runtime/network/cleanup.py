"""Host-side cleanup: `pyctr gc` (whatever a crashed pyctr left) and
teardown (a network's host side, for `pyctr net rm` and `pyctr cluster down`).

Container devices need no sweeping: they live in the container's netns
(veth peer, macvlan) and die with it, and a veth's host end dies with its
peer. What can outlive a crash is host-side and pyctr's own: leases of
dead owners, the host end named in such a lease if it is still there,
leases of host devices that are gone, and what each kind leaves (a host shim
no live container uses, its routes to departed containers). Only what this
state root's leases name is touched, so two pyctr roots on one host never
sweep each other's things.
"""
from pyctr.network import ipam, kinds
from pyctr.network.addr import int_ip


def gc(paths, kernel=None):
    from pyctr.network.wiring import Kernel
    kernel = kernel or Kernel()
    removed = []
    host = kernel.host()
    try:
        for key in ipam.pools(paths):
            with ipam.Pool(paths, key) as pool:
                removed += _gc_pool(host, pool)
                kind, device = kinds.by_pool(key)
                # a pool whose network is gone (a crash while making it, a
                # bridge removed by hand): as `net rm` would have left it
                if kind is not None and not kind.host_side(host, device) \
                        and pool.remove_if_empty():
                    removed.append("address pool %s (empty, its network gone from this node)" % key)
        ipam.remove_root(paths)
    finally:
        host.close()
    return removed


def _gc_pool(host, pool):
    removed = []
    for lease in pool.reap():
        removed.append("lease %s in %s (%s)" % (int_ip(lease.ip), pool.key, lease.describe()))
        if lease.host_ifname and host.delete_link(name=lease.host_ifname):
            removed.append("interface %s" % lease.host_ifname)
    for lease in list(pool.leases().values()):  # leases of host devices that are gone
        if lease.holder == "shim" and host.link(lease.shim) is None:
            pool.release(lease.ip, shim=lease.shim)
            removed.append("lease %s in %s (host shim %s, gone)"
                           % (int_ip(lease.ip), pool.key, lease.shim))
    kind, device = kinds.by_pool(pool.key)
    if kind is not None:
        removed += kind.gc(host, pool, device)
    return removed


def teardown(paths, kind, device, uplink=None, own_ports=(), kernel=None):
    """Remove what pyctr made on the host for the network of `kind` (a
    kinds name; "bridge", the older name of veth, too) on `device` (a bridge pyctr made, its uplink getting its addresses back; a
    macvlan host shim), unless a live container still uses it. own_ports:
    host ends of veths whose containers the caller has just removed (their
    netns may still be going): deleted, not counted as users.
    Returns None once nothing of it is left, else why it stays
    ("in use by container web", "bridge br0 still has ports: ...")."""
    from pyctr.network import config
    from pyctr.network.wiring import Kernel
    network_kind = kinds.get(config.OLDER_KIND_NAMES.get(kind, kind))
    net = config.Network(device, network_kind.name, device, uplink=uplink)
    host = (kernel or Kernel()).host()
    try:
        with ipam.Pool(paths, net.pool) as pool:
            live = [lease for lease in pool.leases().values()
                    if lease.holder == "container" and lease.alive()]
            if live:
                return "in use by %s" % ", ".join(sorted({lease.describe() for lease in live}))
            pool.reap()
            why = network_kind.teardown(host, pool, net, own_ports)
            removed = False
            if why is None:
                pool.forget_conflicts()
                removed = pool.remove_if_empty()  # nothing of the network is left
        if removed:
            ipam.remove_root(paths)
        return why
    finally:
        host.close()
