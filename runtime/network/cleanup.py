"""`pyctr gc` for the network: whatever a crashed pyctr left.

Container devices need no sweeping: they live in the container's netns
(veth peer, macvlan) and die with it, and a veth's host end dies with its
peer. What can outlive a crash is host-side and pyctr's own: leases of
dead owners, the host end named in such a lease if it is still there, host
shims that no live container uses, and shim routes to departed containers.
Only what this state root's leases name is touched, so two pyctr roots on
one host never sweep each other's things.
"""
from pyctr.network import ipam
from pyctr.network.addr import int_ip, ip_int
from pyctr.network.wiring import Kernel, remove_shim_if_unused, shim_ifname


def gc(paths, kernel=None):
    kernel = kernel or Kernel()
    removed = []
    host = kernel.host()
    try:
        for key in ipam.pools(paths):
            with ipam.Pool(paths, key) as pool:
                removed += _gc_pool(host, pool)
    finally:
        host.close()
    return removed


def _gc_pool(host, pool):
    removed = []
    for lease in pool.reap():
        removed.append("lease %s in %s (%s)" % (int_ip(lease.ip), pool.key, lease.describe()))
        if lease.host_ifname and host.delete_link(name=lease.host_ifname):
            removed.append("interface %s" % lease.host_ifname)
    leases = pool.leases()
    for lease in list(leases.values()):  # leases of shims that are gone
        if lease.shim and host.link(lease.shim) is None:
            pool.release(lease.ip, shim=lease.shim)
            removed.append("lease %s in %s (host shim %s, gone)"
                           % (int_ip(lease.ip), pool.key, lease.shim))
    if not pool.key.startswith("mv-"):
        return removed
    name = shim_ifname(pool.key[3:])
    link = host.link(name)
    if link is None:
        return removed
    if remove_shim_if_unused(host, pool, name):
        removed.append("interface %s (host shim)" % name)
        return removed
    live = {ip for ip, lease in pool.leases().items() if not lease.shim}
    for r in host.routes():
        if r["oif"] == link.index and r["dst_len"] == 32 and ip_int(r["dst"]) not in live:
            host.del_route(r["dst"], 32, oif=link.index)
            removed.append("route %s/32 via host shim %s" % (r["dst"], name))
    return removed
