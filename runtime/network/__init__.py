"""pyctr's built-in networking: veth pairs on a bridge and macvlans, wired
by the parent through rtnetlink while the container's first process waits.

The runtime calls:
    parse(text) -> NetworkRequest         one --net value (see request.py)
    attach(paths, container_id, requests, pid) -> [record, ...]
    detach(paths, container_id, records)  idempotent
    gc(paths) -> [what was removed, ...]  idempotent
and `pyctr net ...` is cli.command. Each submodule is imported only when
used, so `pyctr run --net=none` pays nothing for this package.
"""


def parse(text):
    from pyctr.network.request import parse as _parse
    return _parse(text)


def attach(paths, container_id, requests, pid, kernel=None):
    """Create each request's device in the netns of `pid` (eth0, eth1, ...)
    with address, routes, lease and host-side parts. Returns JSON-able
    records (ifname, kind, ip CIDR, gateway, mac, mtu, host_ifname, bridge
    or lower+mode, shim, network, pool, lease). Undoes itself and raises
    PyctrError on failure."""
    from pyctr.network.wiring import attach as _attach
    return _attach(paths, container_id, requests, pid, kernel)


def detach(paths, container_id, records, kernel=None):
    from pyctr.network.wiring import detach as _detach
    return _detach(paths, container_id, records, kernel)


def gc(paths, kernel=None):
    from pyctr.network.cleanup import gc as _gc
    return _gc(paths, kernel)
